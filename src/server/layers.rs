//! Transport-level adjustments shared by every service.

use http::{HeaderValue, Response};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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

/// When a request's head reached mmsearch's layers (inserted by `observe`): deadlines count
/// from here, not from when the handler got its decoded message.
#[derive(Clone, Copy, Debug)]
pub struct Arrived(pub Instant);

/// tonic's transport arms its own timer on `grpc-timeout` just before our layers see the
/// request, and answers CANCELLED ("Timeout expired") when it fires. Ours is set one timer tick
/// earlier so an expired deadline reads DEADLINE_EXCEEDED: when both are due in the same
/// poll, tonic polls the handler first.
const AHEAD_OF_TRANSPORT: Duration = Duration::from_millis(1);

/// The instant a request must be answered by, and the budget it was given.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: Instant,
    pub budget: Duration,
}

impl Deadline {
    /// The client's `grpc-timeout`, capped by the server's limit, counted from the request's
    /// arrival.
    pub fn of(
        metadata: &tonic::metadata::MetadataMap,
        extensions: &tonic::Extensions,
        cap: Duration,
    ) -> Deadline {
        let start = extensions
            .get::<Arrived>()
            .map_or_else(Instant::now, |a| a.0);
        let client = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let budget = match client {
            Some(d) if d <= cap => d.saturating_sub(AHEAD_OF_TRANSPORT),
            _ => cap,
        };
        Deadline {
            at: start + budget,
            budget,
        }
    }

    /// Runs a handler until the deadline; an expired one answers DEADLINE_EXCEEDED.
    pub async fn run<T>(
        self,
        fut: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout_at(self.at.into(), fut).await {
            Ok(r) => r,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "deadline of {:?} exceeded",
                self.budget
            ))),
        }
    }
}

/// `grpc-timeout` is an integer of at most 8 digits followed by a unit letter.
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
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
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok::<_, tonic::Status>(())
        };
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert("grpc-timeout", "20m".parse().unwrap());
        let arrived = Instant::now();
        let mut ext = tonic::Extensions::new();
        ext.insert(Arrived(arrived));
        let deadline = Deadline::of(&md, &ext, Duration::from_secs(30));
        // Counted from arrival and ahead of tonic's own timer on the same header.
        assert!(deadline.at < arrived + Duration::from_millis(20));
        let err = deadline.run(slow()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::DeadlineExceeded);
        assert!(arrived.elapsed() < Duration::from_millis(400));
        // The server cap applies when the client sends no deadline or a longer one.
        let none = tonic::metadata::MetadataMap::new();
        let capped = Deadline::of(&none, &ext, Duration::from_millis(20));
        assert_eq!(capped.budget, Duration::from_millis(20));
        assert!(capped.run(slow()).await.is_err());
        md.insert("grpc-timeout", "5S".parse().unwrap());
        assert_eq!(
            Deadline::of(&md, &ext, Duration::from_secs(1)).budget,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }
}
