//! The `posthorn` binary as a new user runs it: first-run bootstrap,
//! SIGTERM, configuration errors, and the administration commands.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use posthorn::proto::v1::GetBrandingRequest;
use posthorn::proto::v1::templates_service_client::TemplatesServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{KeyHeader, with_key};

/// A `posthorn` command in `dir`, with a clean environment and SQLite there.
pub(crate) fn posthorn(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_posthorn"));
    command.current_dir(dir).kill_on_drop(true);
    clean_environment(&mut command);
    command
        .env(
            "POSTHORN_DATABASE_URL",
            format!("sqlite://{}", dir.join("posthorn.db").display()),
        )
        .env("POSTHORN_LISTEN", "127.0.0.1:0");
    command
}

/// Keeps the test runner's own Posthorn and OpenTelemetry settings from
/// reaching `command`.
pub(crate) fn clean_environment(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("POSTHORN_") || name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
}

async fn run(dir: &Path, args: &[&str]) -> Output {
    posthorn(dir)
        .args(args)
        .output()
        .await
        .expect("run posthorn")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What `serve` printed up to its ready banner.
pub(crate) struct Started {
    pub(crate) child: Child,
    pub(crate) addr: String,
    banner: Vec<String>,
}

/// Starts `posthorn serve` and reads its banner up to the transport line,
/// plus the bootstrap block when one is printed.
async fn serve(dir: &Path, args: &[&str]) -> Started {
    serve_with(dir, &[], args).await
}

/// `serve` with extra environment variables.
pub(crate) async fn serve_with(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Started {
    start(dir, env, args, Stdio::null()).await
}

/// `serve_with`, with the server's stderr (its logs and failpoint
/// announcements) for the test to read.
pub(crate) async fn serve_with_stderr(
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (
    Started,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut started = start(dir, env, args, Stdio::piped()).await;
    let stderr = BufReader::new(started.child.stderr.take().unwrap()).lines();
    (started, stderr)
}

async fn start(dir: &Path, env: &[(&str, &str)], args: &[&str], stderr: Stdio) -> Started {
    let mut command = posthorn(dir);
    command
        .envs(env.iter().copied())
        .arg("serve")
        .args(args)
        .stderr(stderr);
    start_command(command, args.contains(&"--no-bootstrap")).await
}

/// Runs `command`, a `posthorn serve` however it is wrapped, and reads its
/// banner (`no_bootstrap`: it prints no key).
pub(crate) async fn start_command(mut command: Command, no_bootstrap: bool) -> Started {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let mut addr = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest.split_whitespace().next().unwrap().to_owned();
        }
        let done = line.contains("SendService/SendEmail")
            || (line.starts_with("transport:") && no_bootstrap);
        banner.push(line);
        if done {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Started {
        child,
        addr,
        banner,
    }
}

impl Started {
    /// The bootstrap key the banner printed.
    pub(crate) fn key(&self) -> String {
        self.banner
            .iter()
            .flat_map(|l| l.split_whitespace())
            .find(|w| w.starts_with("ph_live_"))
            .expect("a key is printed")
            .to_owned()
    }

    /// A gRPC channel to the server.
    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

pub(crate) async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().await.unwrap()
}

#[tokio::test]
async fn first_run_prints_where_it_listens_the_transport_and_a_working_key_then_exits_cleanly_on_sigterm()
 {
    let dir = tempfile::tempdir().unwrap();
    let started = serve(dir.path(), &[]).await;
    let banner = started.banner.join("\n");
    assert!(banner.contains("transport: capture://"), "{banner}");
    assert!(
        banner.contains("account \"default\"") && banner.contains("\"localhost\""),
        "{banner}"
    );
    let key = started.key();

    // The printed key works: the branding of the bootstrap account comes back.
    let channel = started.channel().await;
    let branding = TemplatesServiceClient::new(channel)
        .get_branding(with_key(
            GetBrandingRequest::default(),
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .expect("the printed key is accepted")
        .into_inner()
        .branding
        .expect("a branding");
    assert_eq!(branding.brand_name, "default");

    let exit = terminate(started.child).await;
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");

    // The plaintext key is nowhere in the database files (A3).
    for file in ["posthorn.db", "posthorn.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{file} holds the plaintext key"
            );
        }
    }

    // A second start finds the account and prints no new key.
    let again = serve(dir.path(), &["--no-bootstrap"]).await;
    assert!(terminate(again.child).await.success());
    let keys = run(dir.path(), &["keys", "list", "--account", "default"]).await;
    assert_eq!(
        stdout(&keys)
            .lines()
            .filter(|l| l.contains("ph_live_"))
            .count(),
        1,
        "{}",
        stdout(&keys)
    );
}

#[tokio::test]
async fn no_bootstrap_leaves_an_empty_database_empty() {
    let dir = tempfile::tempdir().unwrap();
    let started = serve(dir.path(), &["--no-bootstrap"]).await;
    assert!(!started.banner.join("\n").contains("ph_live_"));
    assert!(terminate(started.child).await.success());
    let accounts = run(dir.path(), &["accounts", "list"]).await;
    assert!(accounts.status.success());
    assert_eq!(stdout(&accounts).trim(), "");
}

/// Runs `posthorn serve` with extra environment and arguments, expects
/// start-up to fail, and returns what it printed on standard error.
async fn serve_refused(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let output = posthorn(dir)
        .args(args)
        .arg("serve")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    assert!(
        !output.status.success(),
        "start-up should fail with {env:?} {args:?}"
    );
    stderr(&output)
}

#[tokio::test]
async fn an_invalid_setting_stops_start_up_naming_the_setting_and_what_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_refused(dir.path(), &[("POSTHORN_LISTEN", "nowhere")], &[]).await;
    assert!(
        err.contains("`listen`") && err.contains("POSTHORN_LISTEN") && err.contains("host:port"),
        "{err}"
    );
    let err = serve_refused(dir.path(), &[("POSTHORN_LOG_FORMAT", "xml")], &[]).await;
    assert!(err.contains("human or json"), "{err}");
}

#[tokio::test]
async fn an_unknown_setting_stops_start_up_in_the_environment_and_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_refused(dir.path(), &[("POSTHORN_LISTN", "127.0.0.1:0")], &[]).await;
    assert!(err.contains("POSTHORN_LISTN"), "{err}");

    let config = dir.path().join("posthorn.toml");
    std::fs::write(&config, "transprt = \"capture://\"\n").unwrap();
    let err = serve_refused(dir.path(), &[], &["--config", config.to_str().unwrap()]).await;
    assert!(
        err.contains("`transprt`") && err.contains("transport"),
        "{err}"
    );

    let err = serve_refused(dir.path(), &[], &["--config", "missing.toml"]).await;
    assert!(err.contains("missing.toml"), "{err}");
}

#[tokio::test]
async fn an_unreachable_database_stops_start_up_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_refused(
        dir.path(),
        &[(
            "POSTHORN_DATABASE_URL",
            "postgres://nobody:s3cret@127.0.0.1:1/none",
        )],
        &[],
    )
    .await;
    assert!(err.contains("cannot open the database"), "{err}");
    // It names the database, never its password.
    assert!(
        err.contains("postgres://nobody:***@127.0.0.1:1/none") && !err.contains("s3cret"),
        "{err}"
    );
    // It says why, once: not only that a pool timed out.
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert!(!err.contains("pool timed out"), "{err}");

    // A server that answers, without the database asked for.
    let Ok(url) = std::env::var("POSTHORN_TEST_DATABASE_URL") else {
        return;
    };
    let (server, _) = url
        .rsplit_once('/')
        .expect("a database URL names a database");
    let err = serve_refused(
        dir.path(),
        &[(
            "POSTHORN_DATABASE_URL",
            &format!("{server}/posthorn_no_such_database"),
        )],
        &[],
    )
    .await;
    assert!(
        err.contains(r#"database "posthorn_no_such_database" does not exist"#),
        "{err}"
    );
}

#[tokio::test]
async fn migrate_applies_the_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let output = run(dir.path(), &["migrate"]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("m20261122_000001_initial"),
            "{}",
            stdout(&output)
        );
    }
}

#[tokio::test]
async fn accounts_keys_and_identities_are_administered_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        run(d, &["accounts", "create", "acme"])
            .await
            .status
            .success()
    );
    let duplicate = run(d, &["accounts", "create", "acme"]).await;
    assert!(
        !duplicate.status.success() && stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );
    let bad = run(d, &["accounts", "create", "Not Valid"]).await;
    assert!(
        !bad.status.success() && stderr(&bad).contains("lowercase"),
        "{}",
        stderr(&bad)
    );
    assert!(stdout(&run(d, &["accounts", "list"]).await).starts_with("acme\tacc_"));

    let created = run(
        d,
        &[
            "keys",
            "create",
            "--account",
            "acme",
            "--scope",
            "email:send,email:read",
            "--test",
        ],
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let key = stdout(&created).trim().to_owned();
    assert!(key.starts_with("ph_test_"), "{key}");
    assert!(stderr(&created).contains("shown only this once"));

    let unknown_scope = run(
        d,
        &[
            "keys",
            "create",
            "--account",
            "acme",
            "--scope",
            "email:sned",
        ],
    )
    .await;
    assert_eq!(unknown_scope.status.code(), Some(2));
    assert!(
        stderr(&unknown_scope).contains("email:send"),
        "{}",
        stderr(&unknown_scope)
    );
    let no_account = run(
        d,
        &[
            "keys",
            "create",
            "--account",
            "nobody",
            "--scope",
            "email:send",
        ],
    )
    .await;
    assert!(!no_account.status.success() && stderr(&no_account).contains("not found"));

    let listed = stdout(&run(d, &["keys", "list", "--account", "acme"]).await);
    let prefix = &key[..16];
    let row = listed
        .lines()
        .find(|l| l.contains(prefix))
        .unwrap_or_else(|| panic!("{prefix} not in {listed}"));
    assert!(
        row.contains("test") && row.contains("email:send email:read")
            || row.contains("email:read email:send"),
        "{row}"
    );
    assert!(!listed.contains(&key), "keys are never shown again");

    assert!(
        run(d, &["keys", "revoke", "--account", "acme", prefix])
            .await
            .status
            .success()
    );
    let revoked = stdout(&run(d, &["keys", "list", "--account", "acme"]).await);
    assert!(
        !revoked
            .lines()
            .find(|l| l.contains(prefix))
            .unwrap()
            .ends_with("\t-"),
        "the key shows a revocation time: {revoked}"
    );
    assert!(
        !run(d, &["keys", "revoke", "--account", "acme", prefix])
            .await
            .status
            .success(),
        "revoking twice fails"
    );

    for identity in ["Mail.Acme.example", "billing@acme.example"] {
        let added = run(d, &["identities", "add", "--account", "acme", identity]).await;
        assert!(added.status.success(), "{identity}: {}", stderr(&added));
    }
    let bad_identity = run(
        d,
        &["identities", "add", "--account", "acme", "not a domain"],
    )
    .await;
    assert!(!bad_identity.status.success());
    let identities = stdout(&run(d, &["identities", "list", "--account", "acme"]).await);
    assert!(
        identities.contains("mail.acme.example\tdomain\tverified"),
        "{identities}"
    );
    assert!(
        identities.contains("billing@acme.example\taddress\tverified"),
        "{identities}"
    );
    assert!(
        run(
            d,
            &[
                "identities",
                "remove",
                "--account",
                "acme",
                "mail.acme.example"
            ]
        )
        .await
        .status
        .success()
    );
    assert!(
        !stdout(&run(d, &["identities", "list", "--account", "acme"]).await)
            .contains("mail.acme.example")
    );
}

#[tokio::test]
async fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["accounts", "create", "--help"],
        &["accounts", "list", "--help"],
        &["keys", "create", "--help"],
        &["keys", "list", "--help"],
        &["keys", "revoke", "--help"],
        &["identities", "add", "--help"],
        &["identities", "list", "--help"],
        &["identities", "remove", "--help"],
    ] {
        let output = run(dir.path(), args).await;
        assert!(output.status.success(), "{args:?}");
        assert!(stdout(&output).contains("Usage:"), "{args:?}");
    }
    let bad = run(dir.path(), &["frobnicate"]).await;
    assert_eq!(bad.status.code(), Some(2));
}

/// D2: the process dies (SIGKILL) after the accept committed and before the
/// reply left. The client saw an error; its retry with the same key must
/// get the stored message back, and there is exactly one.
#[tokio::test]
async fn a_kill_between_commit_and_reply_keeps_the_message_once_and_the_retry_replays_it_d2() {
    use posthorn::proto::v1::messages_service_client::MessagesServiceClient;
    use posthorn::proto::v1::send_service_client::SendServiceClient;
    use posthorn::proto::v1::{ListMessagesRequest, SendEmailRequest};

    let dir = tempfile::tempdir().unwrap();
    let mut child = posthorn(dir.path())
        .arg("serve")
        .env("POSTHORN_TEST_FAILPOINT", "after_commit_before_reply")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut key) = (String::new(), String::new());
    while let Some(line) = stdout.next_line().await.unwrap() {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest.split_whitespace().next().unwrap().to_owned();
        }
        if let Some(word) = line.split_whitespace().find(|w| w.starts_with("ph_live_")) {
            key = word.to_owned();
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    let request = || SendEmailRequest {
        from_email: "hello@localhost".into(),
        to: vec!["jane@example.com".into()],
        subject: "Exactly once".into(),
        text: "Hello".into(),
        idempotency_key: "d2-order-7".into(),
        ..Default::default()
    };
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let first = tokio::spawn({
        let (channel, key, request) = (channel.clone(), key.clone(), request());
        async move {
            SendServiceClient::new(channel)
                .send_email(with_key(request, KeyHeader::Bearer, &key))
                .await
        }
    });
    // The server says when the commit is done and the reply is held back.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let committed_id = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("the failpoint is reached before stderr closes");
        if let Some(rest) = line
            .split("failpoint after_commit_before_reply: message ")
            .nth(1)
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "killed: {status:?}");
    let error = first
        .await
        .unwrap()
        .expect_err("the client never got its reply");
    assert_ne!(error.code(), tonic::Code::Ok);

    // Restart on the same database; the client retries with the same key.
    let started = serve(dir.path(), &["--no-bootstrap"]).await;
    let channel = started.channel().await;
    let retry = SendServiceClient::new(channel.clone())
        .send_email(with_key(request(), KeyHeader::Bearer, &key))
        .await
        .expect("the retry succeeds");
    assert_eq!(retry.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(
        retry.get_ref().id,
        committed_id,
        "the stored message is returned"
    );
    let listed = MessagesServiceClient::new(channel)
        .list_messages(with_key(
            ListMessagesRequest::default(),
            KeyHeader::Bearer,
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(listed.len(), 1, "exactly one message");
    assert_eq!(listed[0].id, committed_id);
    assert_eq!(listed[0].subject, "Exactly once");
    let exit = terminate(started.child).await;
    assert!(exit.success());
}

#[tokio::test]
async fn a_key_revoked_by_another_process_is_refused_within_the_auth_cache_ttl() {
    use posthorn::proto::v1::ListMessagesRequest;
    use posthorn::proto::v1::messages_service_client::MessagesServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let started = serve_with(dir.path(), &[("POSTHORN_AUTH_CACHE_SECONDS", "1")], &[]).await;
    let key = started.key();
    let channel = started.channel().await;
    let list = || {
        let (channel, key) = (channel.clone(), key.clone());
        async move {
            MessagesServiceClient::new(channel)
                .list_messages(with_key(
                    ListMessagesRequest::default(),
                    KeyHeader::XApiKey,
                    &key,
                ))
                .await
        }
    };
    list().await.expect("the key works (and is now cached)");

    // A second process — the CLI — revokes it in the shared database.
    let prefix = posthorn::domain::keys::parse(&key).unwrap().prefix;
    let revoked = run(
        dir.path(),
        &["keys", "revoke", "--account", "default", &prefix],
    )
    .await;
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let at = std::time::Instant::now();

    // The server notices within its one-second TTL: poll for that (20 times
    // a second, inside the key's rate limit), bounded generously for a
    // loaded machine.
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let refused = loop {
        poll.tick().await;
        match list().await {
            Err(status) => break status,
            Ok(_) if at.elapsed() < Duration::from_secs(10) => {}
            Ok(_) => panic!("the revoked key still works after {:?}", at.elapsed()),
        }
    };
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert_eq!(crate::helpers::reason(&refused), "API_KEY_INVALID");
    assert!(terminate(started.child).await.success());
}

/// Started with the soft limit of open files that many systems give a
/// process (1,024; here 256, under a higher hard limit), the server raises
/// it and answers more watch streams at once than the old limit allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_watch_streams_than_the_soft_open_file_limit_are_all_answered() {
    const STREAMS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("sh");
    command
        .current_dir(dir.path())
        .args(["-c", r#"ulimit -Sn 256 && exec "$0" serve"#])
        .arg(env!("CARGO_BIN_EXE_posthorn"))
        .kill_on_drop(true)
        .stderr(Stdio::null());
    clean_environment(&mut command);
    command
        .env("POSTHORN_LISTEN", "127.0.0.1:0")
        // The limits on requests have tests of their own.
        .env("POSTHORN_RATE_LIMIT_BURST", "1000000");
    let server = start_command(command, false).await;
    let key = server.key();

    // Each stream on a connection of its own, all open at once.
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let url = format!("http://{}/v1/messages:watch", server.addr);
    let opening = (0..STREAMS).map(|_| {
        client
            .get(&url)
            .header("x-api-key", &key)
            .header("accept", "text/event-stream")
            .send()
    });
    let responses =
        tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(opening))
            .await
            .expect("every stream is answered");
    for response in &responses {
        let response = response.as_ref().expect("connected");
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
    // And the server still takes a send meanwhile.
    let sent = client
        .post(format!("http://{}/v1/send", server.addr))
        .header("x-api-key", &key)
        .json(&serde_json::json!({
            "from_email": "hello@localhost", "to": ["you@example.com"],
            "subject": "Hello", "text": "Still here",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), reqwest::StatusCode::OK);
    drop(responses);
}
