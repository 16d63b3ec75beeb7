//! The HTTP client of the provider requests (discovery, keys, token): reqwest with rustls,
//! no redirects followed, each request bounded in time and each answer in size.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// The largest provider answer read, in bytes: discovery documents and key sets are a
/// few KiB, token answers less.
pub(crate) const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a request to the provider failed. The messages name the URL, never a body.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    /// No answer: refused, unresolvable, TLS failure, or the time limit.
    #[error("the provider did not answer: {0}")]
    Unreachable(String),
    /// The answer was longer than 256 KiB.
    #[error("the provider's answer exceeds {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
}

/// A bounded HTTP client for one provider.
#[derive(Clone, Debug)]
pub(crate) struct BoundedHttp {
    client: reqwest::Client,
}

impl BoundedHttp {
    /// A client whose requests (connect, send, read) take at most `timeout` each.
    pub(crate) fn new(timeout: Duration) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portcullis-broker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| HttpError::Build(error.to_string()))?;
        Ok(Self { client })
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|error| HttpError::Unreachable(error.to_string()))?;
        let mut answer = self
            .client
            .execute(request)
            .await
            .map_err(|error| HttpError::Unreachable(error.to_string()))?;
        if answer
            .content_length()
            .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
        {
            return Err(HttpError::TooLarge);
        }
        let mut response = HttpResponse::new(Vec::new());
        *response.status_mut() = answer.status();
        *response.headers_mut() = answer.headers().clone();
        let body = response.body_mut();
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|error| HttpError::Unreachable(error.to_string()))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(response)
    }
}

impl<'c> AsyncHttpClient<'c> for BoundedHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
