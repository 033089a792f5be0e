//! The outermost layer: gives every request an id and a tracing span, and records its RPC,
//! final status and latency in the metrics. Being outermost, it also sees requests that auth
//! or admission control turned away.
//!
//! The id is the client's `x-request-id` when it sends a sane one (so a frontend can follow a
//! request across systems), otherwise a fresh one; it is echoed in the response headers.
//!
//! The status is read from the response headers: tonic puts errors of unary calls and
//! rejections in a trailers-only response there. A success, or an error a streaming call
//! reports in its trailers after data has flowed, counts as OK; latency is the time to the
//! response headers (for unary calls, the whole call).

use http::HeaderValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

#[derive(Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
}

fn next_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::LazyLock<u32> = std::sync::LazyLock::new(rand::random);
    format!(
        "{:08x}-{:x}",
        *PREFIX,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn client_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_string())
}

fn status_of(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from)
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for Observe<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
    ResB: Send + 'static,
{
    type Response = http::Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqB>) -> Self::Future {
        let path = req.uri().path().to_string();
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(client_request_id)
            .unwrap_or_else(next_request_id);
        let rpc = crate::telemetry::rpc_label(&path).to_string();
        let span = tracing::info_span!("rpc", request_id = %id, rpc = %rpc);
        let started = Instant::now();
        req.extensions_mut().insert(super::layers::Arrived(started));
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                let mut result = fut.await;
                let elapsed = started.elapsed();
                if let Ok(resp) = &mut result {
                    let code = status_of(resp.headers());
                    crate::telemetry::observe_request(&path, code, elapsed);
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        resp.headers_mut().insert("x-request-id", v);
                    }
                    if code == tonic::Code::Ok {
                        tracing::debug!(ms = elapsed.as_secs_f64() * 1e3, "done");
                    } else {
                        let message = resp
                            .headers()
                            .get("grpc-message")
                            .and_then(|m| m.to_str().ok())
                            .unwrap_or("");
                        tracing::info!(
                            code = crate::telemetry::code_label(code),
                            message,
                            ms = elapsed.as_secs_f64() * 1e3,
                            "failed"
                        );
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_are_sanitised() {
        assert_ne!(next_request_id(), next_request_id());
        assert_eq!(
            client_request_id(&HeaderValue::from_static("abc-123")),
            Some("abc-123".into())
        );
        assert_eq!(
            client_request_id(&HeaderValue::from_static("has space")),
            None
        );
        assert_eq!(client_request_id(&HeaderValue::from_static("")), None);
    }
}
