//! What one client may cost the host: the largest request body a component
//! accepts, how long a connection may take to send its headers or stay idle,
//! and how many connections are open at once.
//!
//! A body is read by the host, up to the component's limit, before an
//! instance is taken for it: a client that declares too much
//! (`Content-Length`) or sends too much (chunked) gets 413 without the excess
//! ever being buffered, and a slow body holds a connection, not an instance.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;
use http_body_util::BodyExt;

/// The default request-body limit: 4 MiB, far above any request of the
/// platform (a batch of 100 feature rows is ~40 KiB) and far below what
/// would hurt the host.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 4 << 20;
/// A client that has not sent its whole request head within this is closed.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections open at once; past it, new ones get 503 and are closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_request_body_bytes: u64,
    /// Per component id, overriding `max_request_body_bytes`.
    pub component_max_request_body_bytes: HashMap<String, u64>,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            component_max_request_body_bytes: HashMap::new(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Limits {
    /// The body limit of one component.
    pub fn body_limit(&self, component: &str) -> u64 {
        self.component_max_request_body_bytes
            .get(component)
            .copied()
            .unwrap_or(self.max_request_body_bytes)
    }

    /// Settings that cannot work are refused before anything binds.
    pub fn check(
        &self,
        components: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> anyhow::Result<()> {
        if self.header_read_timeout.is_zero() {
            bail!("the header read timeout must be more than 0 s");
        }
        if self.max_connections == 0 {
            bail!("the connection limit must be at least 1");
        }
        let known: Vec<String> = components
            .into_iter()
            .map(|c| c.as_ref().to_string())
            .collect();
        for id in self.component_max_request_body_bytes.keys() {
            if !known.contains(id) {
                bail!(
                    "a request-body limit names `{id}`, which is not a component of the application"
                );
            }
        }
        Ok(())
    }
}

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the request body could not be read: {0}")]
    Unreadable(String),
}

/// Read a whole body, refusing it as soon as it passes `limit` bytes:
/// `Content-Length` is checked before anything is read, a chunked body
/// while it arrives.
pub async fn read_body<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: u64,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = std::pin::pin!(body);
    let mut bytes = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() as u64 + data.len() as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunked(chunks: usize, size: usize) -> impl http_body::Body<Data = Bytes, Error = String> {
        let frames =
            (0..chunks).map(move |_| Ok(http_body::Frame::data(Bytes::from(vec![7u8; size]))));
        StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = read_body(&http::HeaderMap::new(), chunked(4, 256), 1024)
            .await
            .unwrap();
        assert_eq!(body.len(), 1024);
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_refused() {
        let err = read_body(&http::HeaderMap::new(), chunked(5, 256), 1024)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { limit: 1024 }), "{err}");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "1025".parse().unwrap());
        // The body itself is small: only the declaration is looked at.
        let err = read_body(&headers, chunked(1, 1), 1024).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { .. }));
    }

    #[test]
    fn a_limit_for_an_unknown_component_is_refused() {
        let mut limits = Limits::default();
        limits
            .component_max_request_body_bytes
            .insert("nope".into(), 10);
        assert!(limits.check(["data-service"]).is_err());
        limits.component_max_request_body_bytes.clear();
        limits
            .component_max_request_body_bytes
            .insert("data-service".into(), 10);
        limits.check(["data-service"]).unwrap();
        assert_eq!(limits.body_limit("data-service"), 10);
        assert_eq!(
            limits.body_limit("ml-service"),
            DEFAULT_MAX_REQUEST_BODY_BYTES
        );
    }
}
