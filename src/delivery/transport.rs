//! Where built messages go, chosen by `POSTHORN_TRANSPORT`.

use std::path::PathBuf;
use std::sync::Arc;

use super::smtp::Relay;
use crate::domain::delivery::Reply;

/// A configured transport.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Nothing leaves the machine: the stored MIME is the delivery.
    Capture,
    /// One `.eml` file per message in a directory.
    File(PathBuf),
    /// An SMTP relay and Posthorn's pool of connections to it.
    Smtp(Arc<Relay>),
}

impl Transport {
    /// Reads a transport URL; `hostname` is the HELO name for SMTP relays.
    pub fn parse(url: &str, hostname: &str) -> Result<Transport, String> {
        if url == "capture://" || url == "capture:" {
            return Ok(Transport::Capture);
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{url}`: a file transport needs an absolute directory, e.g. file:///var/mail/posthorn"
                ));
            }
            return Ok(Transport::File(PathBuf::from(path)));
        }
        if url.starts_with("smtp://") || url.starts_with("smtps://") {
            return Ok(Transport::Smtp(Arc::new(Relay::parse(url, hostname)?)));
        }
        // Not echoed: a mistyped scheme may still carry a password.
        Err(
            "not a transport URL: capture://, file:///DIR, smtp://[user:pass@]host[:port] or smtps://…"
                .to_owned(),
        )
    }

    /// The name recorded with each attempt (never credentials).
    pub fn name(&self) -> String {
        match self {
            Transport::Capture => "capture".to_owned(),
            Transport::File(dir) => format!("file {}", dir.display()),
            Transport::Smtp(relay) => relay.name(),
        }
    }

    /// Hands `raw` (message `id`, envelope sender `from`) to the transport
    /// for `recipients`; one reply per recipient, in order.
    pub async fn send(
        &self,
        id: &str,
        from: &str,
        recipients: &[String],
        raw: &[u8],
    ) -> Vec<Reply> {
        let all = |reply: Reply| vec![reply; recipients.len()];
        match self {
            Transport::Smtp(relay) => relay.send(from, recipients, raw).await,
            Transport::Capture => all(Reply::smtp(250, "2.0.0 captured", "capture")),
            Transport::File(dir) => {
                let path = dir.join(format!("{id}.eml"));
                let temporary = dir.join(format!(".{id}.eml.tmp"));
                let written = async {
                    tokio::fs::create_dir_all(dir).await?;
                    tokio::fs::write(&temporary, raw).await?;
                    let file = tokio::fs::File::open(&temporary).await?;
                    file.sync_all().await?;
                    tokio::fs::rename(&temporary, &path).await
                }
                .await;
                match written {
                    Ok(()) => all(Reply::smtp(
                        250,
                        &format!("2.0.0 written to {}", path.display()),
                        "file",
                    )),
                    Err(error) => all(Reply::failure(
                        format!("cannot write {}: {error}", path.display()),
                        "file",
                    )),
                }
            }
        }
    }

    /// How long the transport waits for any one reply, when it talks to a
    /// peer that may hang.
    pub fn reply_timeout(&self) -> Option<std::time::Duration> {
        match self {
            Transport::Smtp(relay) => Some(relay.timeout()),
            Transport::Capture | Transport::File(_) => None,
        }
    }

    /// Whether a 2xx from this transport is final delivery (`delivered`)
    /// rather than a hand-off to a relay (`sent`).
    pub fn delivers(&self) -> bool {
        matches!(self, Transport::Capture | Transport::File(_))
    }
}
