//! Backpressure: each service admits a bounded number of concurrent requests and queues a
//! bounded number more; beyond that a request is answered RESOURCE_EXHAUSTED at once.
//!
//! Without this, a flood of image or voice queries would pile up in the blocking pool and
//! in memory (each holds its payload) until latency for everyone is unbounded. Answering
//! quickly lets clients back off or go elsewhere while admitted requests keep their latency.
//! Services are limited separately so an ingest burst cannot starve searches.

use super::auth::{role_for_path, Role};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceLimit {
    /// Requests running at once.
    pub max_in_flight: usize,
    /// Requests waiting for a slot; more get RESOURCE_EXHAUSTED immediately.
    pub max_queued: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ConcurrencyConfig {
    pub search: ServiceLimit,
    pub ingest: ServiceLimit,
    pub admin: ServiceLimit,
    /// Longest a queued request waits for a slot before RESOURCE_EXHAUSTED.
    pub queue_timeout_ms: u64,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        ConcurrencyConfig {
            // Text/image/voice encoding is CPU-bound; more in flight than a few per core only
            // adds latency. Vector queries finish in ~1 ms, so the queue drains fast.
            search: ServiceLimit {
                max_in_flight: 64,
                max_queued: 256,
            },
            ingest: ServiceLimit {
                max_in_flight: 16,
                max_queued: 64,
            },
            admin: ServiceLimit {
                max_in_flight: 8,
                max_queued: 16,
            },
            queue_timeout_ms: 2_000,
        }
    }
}

impl ConcurrencyConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, l) in [
            ("search", self.search),
            ("ingest", self.ingest),
            ("admin", self.admin),
        ] {
            if l.max_in_flight == 0 {
                return Err(format!(
                    "limits.concurrency.{name}.max_in_flight must be > 0"
                ));
            }
        }
        Ok(())
    }
}

struct Gate {
    name: &'static str,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
}

/// Decrements the queue count however the wait ends (admitted, timed out, or cancelled).
struct QueueSlot<'a>(&'a AtomicUsize);
impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running request's slot; frees it and the in-flight gauge when the request ends.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    service: &'static str,
}
impl Drop for Admitted {
    fn drop(&mut self) {
        crate::telemetry::metrics()
            .in_flight
            .with_label_values(&[self.service])
            .dec();
    }
}

impl Gate {
    fn new(name: &'static str, limit: ServiceLimit) -> Gate {
        Gate {
            name,
            slots: Arc::new(Semaphore::new(limit.max_in_flight)),
            queued: AtomicUsize::new(0),
            max_queued: limit.max_queued,
        }
    }

    async fn admit(&self, queue_timeout: Duration) -> Result<Admitted, tonic::Status> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    return Err(tonic::Status::resource_exhausted(format!(
                        "{} service is at its concurrency limit and its queue is full; retry with backoff",
                        self.name
                    )));
                }
                let _slot = QueueSlot(&self.queued);
                match tokio::time::timeout(queue_timeout, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(tonic::Status::unavailable("server is shutting down")),
                    Err(_) => {
                        return Err(tonic::Status::resource_exhausted(format!(
                            "{} service stayed at its concurrency limit for {queue_timeout:?}; retry with backoff",
                            self.name
                        )))
                    }
                }
            }
        };
        crate::telemetry::metrics()
            .in_flight
            .with_label_values(&[self.name])
            .inc();
        Ok(Admitted {
            _permit: permit,
            service: self.name,
        })
    }
}

pub struct Admission {
    search: Gate,
    ingest: Gate,
    admin: Gate,
    queue_timeout: Duration,
}

impl Admission {
    pub fn new(cfg: &ConcurrencyConfig) -> Arc<Admission> {
        Arc::new(Admission {
            search: Gate::new("search", cfg.search),
            ingest: Gate::new("ingest", cfg.ingest),
            admin: Gate::new("admin", cfg.admin),
            queue_timeout: Duration::from_millis(cfg.queue_timeout_ms),
        })
    }

    /// `Ok(None)` for paths that are never limited (health, reflection): probes must answer
    /// even when the server is saturated.
    pub async fn admit(&self, path: &str) -> Result<Option<Admitted>, tonic::Status> {
        let gate = match role_for_path(path) {
            None => return Ok(None),
            Some(Role::Search) => &self.search,
            Some(Role::Ingest) => &self.ingest,
            Some(Role::Admin) => &self.admin,
        };
        gate.admit(self.queue_timeout).await.map(Some)
    }
}

#[derive(Clone)]
pub struct AdmissionLayer {
    admission: Arc<Admission>,
}

impl AdmissionLayer {
    pub fn new(admission: Arc<Admission>) -> Self {
        AdmissionLayer { admission }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            admission: self.admission.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AdmissionService<S> {
    inner: S,
    admission: Arc<Admission>,
}

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for AdmissionService<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = http::Response<ResB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        // The clone takes the place of the service that was polled ready (tower's rule for
        // calling an inner service from inside a future).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let admission = self.admission.clone();
        Box::pin(async move {
            let admitted = match admission.admit(req.uri().path()).await {
                Ok(a) => a,
                Err(status) => return Ok(status.into_http()),
            };
            let response = inner.call(req).await;
            drop(admitted);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn excess_is_rejected_at_once_and_slots_come_back() {
        let cfg = ConcurrencyConfig {
            search: ServiceLimit {
                max_in_flight: 2,
                max_queued: 1,
            },
            queue_timeout_ms: 50,
            ..Default::default()
        };
        let a = Admission::new(&cfg);
        let p = "/mmsearch.v1.SearchService/Search";
        let s1 = a.admit(p).await.unwrap();
        let _s2 = a.admit(p).await.unwrap();
        // Third waits in the queue and times out; while it waits a fourth is refused at once.
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.admit(p).await.map(|_| ()) });
        // On this single-threaded runtime the waiter runs (and queues) while this task sleeps.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let refused = a.admit(p).await.map(|_| ()).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        // Refused by the full queue without waiting (a wall-clock bound would flake under load).
        assert!(refused.message().contains("queue is full"), "{refused:?}");
        let timed_out = waiter.await.unwrap().unwrap_err();
        assert_eq!(timed_out.code(), tonic::Code::ResourceExhausted);
        assert!(
            timed_out
                .message()
                .contains("stayed at its concurrency limit"),
            "{timed_out:?}"
        );
        // Other services and probes are unaffected.
        assert!(a
            .admit("/mmsearch.v1.IngestService/Get")
            .await
            .unwrap()
            .is_some());
        assert!(a
            .admit("/grpc.health.v1.Health/Check")
            .await
            .unwrap()
            .is_none());
        drop(s1);
        assert!(a.admit(p).await.is_ok());
    }
}
