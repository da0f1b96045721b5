//! Posthorn's tonic clients: the `posthorn.v1` messages and service clients
//! generated from the repository's `proto/`, an interceptor that puts the
//! API key on every call, and list RPCs as streams over every page.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::TryStreamExt;
//! use posthorn_client::{Posthorn, v1};
//!
//! let posthorn = Posthorn::connect("http://localhost:7070", "ph_live_…").await?;
//! let sent = posthorn
//!     .send()
//!     .send_email(v1::SendEmailRequest {
//!         from_email: "hello@localhost".into(),
//!         to: vec!["you@example.com".into()],
//!         subject: "Hello".into(),
//!         text: "Hi".into(),
//!         ..Default::default()
//!     })
//!     .await?
//!     .into_inner();
//! let all: Vec<v1::Message> = posthorn.list_messages(Default::default()).try_collect().await?;
//! # Ok(()) }
//! ```

use std::future::Future;

use futures::{Stream, TryStreamExt};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// The `posthorn.v1` messages and clients (also as `v1`).
#[allow(clippy::all, missing_docs)]
pub mod posthorn {
    pub mod v1 {
        tonic::include_proto!("posthorn.v1");
    }
}

pub use posthorn::v1;

/// The `google.api` and `google.rpc` messages the contract uses.
#[allow(clippy::all, missing_docs)]
pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

use v1::contacts_service_client::ContactsServiceClient;
use v1::messages_service_client::MessagesServiceClient;
use v1::send_service_client::SendServiceClient;
use v1::suppressions_service_client::SuppressionsServiceClient;
use v1::templates_service_client::TemplatesServiceClient;
use v1::webhooks_service_client::WebhooksServiceClient;

/// Puts `authorization: Bearer <key>` on every call.
#[derive(Clone)]
pub struct ApiKey {
    header: AsciiMetadataValue,
}

impl ApiKey {
    /// Fails when the key cannot be a header value (it is not ASCII text).
    pub fn new(key: &str) -> Result<ApiKey, Error> {
        let header = format!("Bearer {key}")
            .parse()
            .map_err(|_| Error::InvalidKey)?;
        Ok(ApiKey { header })
    }
}

impl Interceptor for ApiKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

/// A channel whose calls carry the key.
pub type Authenticated = InterceptedService<Channel, ApiKey>;

/// Why a client could not be made.
#[derive(Debug)]
pub enum Error {
    /// The key is not ASCII text.
    InvalidKey,
    /// The URL is not valid, or the server could not be reached.
    Connect(tonic::transport::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidKey => f.write_str("the API key is not ASCII text"),
            Error::Connect(error) => write!(f, "cannot connect to Posthorn: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// Posthorn's services over one channel, with one key.
#[derive(Clone)]
pub struct Posthorn {
    channel: Channel,
    key: ApiKey,
}

impl Posthorn {
    /// Connects to `url` (for example "http://localhost:7070").
    pub async fn connect(url: impl Into<String>, key: &str) -> Result<Posthorn, Error> {
        let key = ApiKey::new(key)?;
        let channel = Endpoint::from_shared(url.into())
            .map_err(Error::Connect)?
            .connect()
            .await
            .map_err(Error::Connect)?;
        Ok(Posthorn::new(channel, key))
    }

    /// Uses a channel made elsewhere.
    pub fn new(channel: Channel, key: ApiKey) -> Posthorn {
        Posthorn { channel, key }
    }

    fn with_key(&self) -> Authenticated {
        InterceptedService::new(self.channel.clone(), self.key.clone())
    }

    pub fn send(&self) -> SendServiceClient<Authenticated> {
        SendServiceClient::new(self.with_key())
    }

    pub fn messages(&self) -> MessagesServiceClient<Authenticated> {
        MessagesServiceClient::new(self.with_key())
    }

    pub fn contacts(&self) -> ContactsServiceClient<Authenticated> {
        ContactsServiceClient::new(self.with_key())
    }

    pub fn suppressions(&self) -> SuppressionsServiceClient<Authenticated> {
        SuppressionsServiceClient::new(self.with_key())
    }

    pub fn templates(&self) -> TemplatesServiceClient<Authenticated> {
        TemplatesServiceClient::new(self.with_key())
    }

    pub fn webhooks(&self) -> WebhooksServiceClient<Authenticated> {
        WebhooksServiceClient::new(self.with_key())
    }

    /// Every message `request`'s filters match, page after page (its
    /// page_size sets the size of each page).
    pub fn list_messages(
        &self,
        request: v1::ListMessagesRequest,
    ) -> impl Stream<Item = Result<v1::Message, Status>> + Send + 'static {
        let client = self.messages();
        pages(
            request,
            move |request| {
                let mut client = client.clone();
                async move {
                    let page = client.list_messages(request).await?.into_inner();
                    Ok((page.messages, page.next_page_token))
                }
            },
            |request, token| request.page_token = token,
        )
    }

    /// Every template `request`'s filters match, page after page.
    pub fn list_templates(
        &self,
        request: v1::ListTemplatesRequest,
    ) -> impl Stream<Item = Result<v1::Template, Status>> + Send + 'static {
        let client = self.templates();
        pages(
            request,
            move |request| {
                let mut client = client.clone();
                async move {
                    let page = client.list_templates(request).await?.into_inner();
                    Ok((page.templates, page.next_page_token))
                }
            },
            |request, token| request.page_token = token,
        )
    }

    /// The events `request` chooses, as they happen.
    pub async fn watch(
        &self,
        request: v1::WatchMessagesRequest,
    ) -> Result<futures::stream::BoxStream<'static, Result<v1::MessageEvent, Status>>, Status> {
        let stream = self.messages().watch_messages(request).await?.into_inner();
        Ok(Box::pin(stream.try_filter_map(|response| async move {
            Ok(response.event)
        })))
    }
}

/// The items of every page: `fetch` answers one page's items and the next
/// page's token (empty on the last), `continue_at` sets that token.
fn pages<R, T, F, Fut>(
    first: R,
    fetch: F,
    continue_at: fn(&mut R, String),
) -> impl Stream<Item = Result<T, Status>> + Send + 'static
where
    R: Send + 'static,
    T: Send + 'static,
    F: FnMut(R) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<T>, String), Status>> + Send,
    R: Clone,
{
    futures::stream::try_unfold((Some(first), fetch), move |(next, mut fetch)| async move {
        let Some(request) = next else {
            return Ok::<_, Status>(None);
        };
        let (items, token) = fetch(request.clone()).await?;
        let next = (!token.is_empty()).then(|| {
            let mut request = request;
            continue_at(&mut request, token);
            request
        });
        Ok(Some((
            futures::stream::iter(items.into_iter().map(Ok)),
            (next, fetch),
        )))
    })
    .try_flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    #[tokio::test]
    async fn pages_follow_the_token_until_it_is_empty() {
        let fetched = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = fetched.clone();
        let items: Vec<u32> = pages(
            String::new(),
            move |token: String| {
                seen.lock().unwrap().push(token.clone());
                async move {
                    Ok(match token.as_str() {
                        "" => (vec![1, 2], "b".to_owned()),
                        "b" => (vec![3, 4], "c".to_owned()),
                        _ => (vec![5], String::new()),
                    })
                }
            },
            |request, token| *request = token,
        )
        .try_collect()
        .await
        .unwrap();
        assert_eq!(items, [1, 2, 3, 4, 5]);
        assert_eq!(*fetched.lock().unwrap(), ["", "b", "c"]);
    }

    #[test]
    fn a_key_that_is_not_header_text_is_refused() {
        assert!(ApiKey::new("ph_live_abc").is_ok());
        assert!(matches!(ApiKey::new("bad\nkey"), Err(Error::InvalidKey)));
    }
}
