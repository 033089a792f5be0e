//! Transport-level adjustments shared by every service.

use http::{HeaderValue, Response};
use std::task::{Context, Poll};

/// Rewrites tonic's OUT_OF_RANGE for oversized messages into RESOURCE_EXHAUSTED in
/// trailers-only responses (how a unary request that fails to decode is answered).
#[derive(Clone, Copy, Default)]
pub struct OversizeAsExhaustedLayer;

impl<S> tower::Layer<S> for OversizeAsExhaustedLayer {
    type Service = OversizeAsExhausted<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OversizeAsExhausted { inner }
    }
}

#[derive(Clone)]
pub struct OversizeAsExhausted<S> {
    inner: S,
}

fn rewrite<B>(mut resp: Response<B>) -> Response<B> {
    let headers = resp.headers_mut();
    let oversize = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if oversize {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
    resp
}

impl<S, Req, B> tower::Service<Req> for OversizeAsExhausted<S>
where
    S: tower::Service<Req, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = futures::future::MapOk<S::Future, fn(Response<B>) -> Response<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        use futures::TryFutureExt;
        self.inner
            .call(req)
            .map_ok(rewrite::<B> as fn(Response<B>) -> Response<B>)
    }
}

/// Runs a handler under the request's deadline: the client's `grpc-timeout`, capped by the
/// server's limit. An expired deadline answers DEADLINE_EXCEEDED (tonic's own timeout layer
/// would say CANCELLED).
pub async fn with_deadline<T>(
    metadata: &tonic::metadata::MetadataMap,
    cap: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    within(request_budget(metadata, cap), fut).await
}

/// Runs a handler under an already computed budget (see [`request_budget`]), for handlers
/// that also pass the deadline further down.
pub async fn within<T>(
    budget: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(budget, fut).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "deadline of {budget:?} exceeded"
        ))),
    }
}

/// Time the request may take: the client's `grpc-timeout`, capped by the server's limit.
pub fn request_budget(
    metadata: &tonic::metadata::MetadataMap,
    cap: std::time::Duration,
) -> std::time::Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(cap, |d| d.min(cap))
}

/// `grpc-timeout` is an integer of at most 8 digits followed by a unit letter.
fn parse_grpc_timeout(v: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (num, unit) = v.split_at(v.len() - 1);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_deadline_answers_deadline_exceeded() {
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("grpc-timeout", "20m".parse().unwrap());
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Ok::<_, tonic::Status>(())
        };
        let started = std::time::Instant::now();
        let err = with_deadline(&md, std::time::Duration::from_secs(30), slow)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert!(started.elapsed() < std::time::Duration::from_millis(400));
        // The server cap applies when the client sends no deadline.
        let none = tonic::metadata::MetadataMap::new();
        let slow = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Ok::<_, tonic::Status>(())
        };
        assert!(
            with_deadline(&none, std::time::Duration::from_millis(20), slow)
                .await
                .is_err()
        );
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(
            parse_grpc_timeout("100m"),
            Some(std::time::Duration::from_millis(100))
        );
        assert_eq!(
            parse_grpc_timeout("2S"),
            Some(std::time::Duration::from_secs(2))
        );
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }
}
