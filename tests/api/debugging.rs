//! The README's "Debugging with grpcurl and buf curl" commands, run as
//! printed (with the test server's address) against a live server: grpcurl
//! from the test tools, buf curl from npm, over gRPC and gRPC-Web.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// The first `language` code block of the README section `heading`.
pub(crate) fn readme_block(heading: &str, language: &str) -> &'static str {
    include_str!("../../README.md")
        .split(heading)
        .nth(1)
        .and_then(|section| section.split(&format!("```{language}\n")).nth(1))
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("the README's {heading} has a {language} block"))
}

/// The shell commands of the README section, continuation lines joined,
/// comments left out.
fn readme_commands() -> Vec<String> {
    let block = readme_block("## Debugging with grpcurl and buf curl", "sh");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}

fn shell(command: &str, key: &str) -> tokio::process::Command {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools-venv/bin");
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut shell = tokio::process::Command::new("bash");
    shell
        .args(["-c", command])
        .env("KEY", key)
        .env("PATH", path)
        .kill_on_drop(true);
    shell
}

async fn run(command: &str, key: &str) -> String {
    let output = shell(command, key).output().await.expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`{command}` failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_grpcurl_and_buf_curl_commands_work_as_printed() {
    // The real binary on its first run: the bootstrap key and sender the
    // README's commands assume; only the port differs.
    let dir = tempfile::tempdir().unwrap();
    let started = crate::binary::serve_with(dir.path(), &[], &[]).await;
    let key = started.key();
    let commands: Vec<String> = readme_commands()
        .iter()
        .map(|c| c.replace("localhost:7070", &started.addr))
        .collect();
    let find = |needle: &str| -> String {
        commands
            .iter()
            .find(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("the README has a command with {needle}"))
            .clone()
    };
    assert_eq!(commands.len(), 8, "{commands:#?}");

    // The watch first: it follows live events until it sees the send.
    let mut watch = shell(&find("WatchMessages"), &key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the watch");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();

    let listed = run(&find(" list"), &key).await;
    assert!(listed.contains("posthorn.v1.SendService"), "{listed}");
    assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
    let rpc = run(&find("describe posthorn.v1.SendService.SendEmail"), &key).await;
    assert!(rpc.contains("rpc SendEmail"), "{rpc}");
    let request = run(&find("describe posthorn.v1.SendEmailRequest"), &key).await;
    assert!(request.contains("from_email"), "{request}");

    // Send until the watch, once subscribed, shows an accepted message.
    let send = find("SendService/SendEmail");
    let mut ids = Vec::new();
    let mut seen = false;
    for _ in 0..10 {
        let answer = run(&send, &key).await;
        let id = answer
            .split("\"id\": \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a send answers its id: {answer}"))
            .to_owned();
        ids.push(id);
        let queued = tokio::time::timeout(Duration::from_secs(3), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("EVENT_TYPE_QUEUED") {
                    return true;
                }
            }
            false
        })
        .await;
        if queued == Ok(true) {
            seen = true;
            break;
        }
    }
    assert!(seen, "the watch showed no event of {ids:?}");
    watch.kill().await.ok();

    let methods = run(&find("--list-methods"), &key).await;
    assert!(
        methods.contains("posthorn.v1.SendService.SendEmail")
            || methods.contains("posthorn.v1.SendService/SendEmail"),
        "{methods}"
    );
    let templates = run(&find("--protocol grpcweb"), &key).await;
    assert!(templates.contains("\"auth\""), "{templates}");
    let messages = run(&find("MessagesService/ListMessages"), &key).await;
    assert!(
        ids.iter().all(|id| messages.contains(id.as_str())),
        "{ids:?} in {messages}"
    );
}
