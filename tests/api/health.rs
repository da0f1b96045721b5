//! Health: `grpc.health.v1` per service, `/healthz` and `/readyz`.

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::on_both_databases;

on_both_databases! {
    async fn grpc_health_reports_every_service_serving(app: TestApp) {
        let mut client = HealthClient::new(app.channel.clone());
        let mut names = posthorn::proto::service_names();
        assert_eq!(names.len(), 6);
        names.push(String::new());
        for service in names {
            let reply = client.check(HealthCheckRequest { service: service.clone() }).await.unwrap().into_inner();
            assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let unknown = client.check(HealthCheckRequest { service: "posthorn.v1.Nope".into() }).await.unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
    }

    async fn healthz_and_readyz_answer_over_plain_http(app: TestApp) {
        let healthz = app.http.get(format!("{}/healthz", app.base_url)).send().await.unwrap();
        assert_eq!(healthz.status(), 200);
        let readyz = app.http.get(format!("{}/readyz", app.base_url)).send().await.unwrap();
        assert_eq!(readyz.status(), 200);
        let body: serde_json::Value = readyz.json().await.unwrap();
        assert_eq!(body["status"], "ready");
    }
}

#[tokio::test]
async fn an_unknown_path_is_a_json_not_found() {
    let app = crate::helpers::spawn_app().await;
    let reply = app
        .http
        .get(format!("{}/v1/nothing-here", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["code"], 5);
    assert_eq!(body["details"][0]["reason"], "NOT_FOUND");
}
