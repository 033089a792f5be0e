//! Operational signals: Prometheus metrics and the orchestrator probes (`/metrics`, `/healthz`,
//! `/readyz` on their own HTTP port, see [`http`]).
//!
//! Metrics live in one process-wide registry because they are recorded from every layer
//! (API, search pipeline, ingest) and exported from one place; passing a handle through every
//! constructor would couple layers that otherwise know nothing of each other. The encoders are
//! the exception: they record nothing themselves and report to the observer they are loaded
//! with, which the engine points here. This module knows no other module of the crate (it
//! sits below all of them). Gauges that describe state (items,
//! layer sizes, rebuild progress, memory) are read from the engine at scrape time (through
//! [`http::StateSource`]) instead of being pushed on every change.

pub mod http;

use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub stage_seconds: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub encode_batch_size: HistogramVec,
    pub ingest_group_size: Histogram,
    pub items: IntGauge,
    pub layer_vectors: IntGaugeVec,
    pub generation: IntGauge,
    pub rebuild_running: IntGauge,
    pub rebuild_done: IntGauge,
    pub rebuild_total: IntGauge,
    pub memory_bytes: IntGaugeVec,
}

fn new_metrics() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new_custom(Some("mmsearch".into()), None)?;
    // 100 µs .. ~52 s: covers a vector search on a warm index and a 30 s voice query.
    let latency = exponential_buckets(0.0001, 2.0, 20)?;
    let m = Metrics {
        requests: IntCounterVec::new(
            Opts::new("requests_total", "gRPC requests by RPC and final status code"),
            &["rpc", "code"],
        )?,
        request_seconds: HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "gRPC request latency by RPC").buckets(latency.clone()),
            &["rpc"],
        )?,
        stage_seconds: HistogramVec::new(
            HistogramOpts::new(
                "stage_duration_seconds",
                "Query pipeline stage latency: decode (image/WAV bytes → model input), encode (the whole query-encoding step, decode included), search (index), hydrate (store reads)",
            )
            .buckets(latency),
            &["stage"],
        )?,
        in_flight: IntGaugeVec::new(Opts::new("in_flight_requests", "Requests admitted and running, by service"), &["service"])?,
        encode_batch_size: HistogramVec::new(
            HistogramOpts::new("encode_batch_size", "Items per batched model call on the ingest path")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            &["modality"],
        )?,
        ingest_group_size: Histogram::with_opts(
            HistogramOpts::new("ingest_group_size", "Items per WAL-synced write group")
                .buckets(vec![1.0, 4.0, 16.0, 64.0, 256.0, 1024.0]),
        )?,
        items: IntGauge::new("items", "Live items in the collection")?,
        layer_vectors: IntGaugeVec::new(
            Opts::new("layer_vectors", "Vectors per space and layer (base = HNSW generation, fresh = mutable layer, tombstones = hidden base entries)"),
            &["space", "layer"],
        )?,
        generation: IntGauge::new("index_generation", "Index generation in use")?,
        rebuild_running: IntGauge::new("rebuild_running", "1 while a rebuild runs")?,
        rebuild_done: IntGauge::new("rebuild_done", "Work units done by the running (or last) rebuild")?,
        rebuild_total: IntGauge::new("rebuild_total", "Work units of the running (or last) rebuild")?,
        memory_bytes: IntGaugeVec::new(
            Opts::new("memory_bytes", "Memory by kind: rss (process), rocksdb_block_cache (shared block cache, index/filter blocks included), rocksdb_memtables (all families), rocksdb_table_readers (outside the cache), rocksdb_pinned_blocks (of the block cache), mutable_layers (vectors since the base generation), catalogue (live items' filter fields), rebuild_reserve (held back for the next rebuild's peak), baseline (measured at start: binary, runtime, models, mapped pages then), accounted (what the memory budget admits writes against: rocksdb_* + mutable_layers + catalogue + rebuild_reserve + baseline), limit (the budget; 0 = none), mmap (index files mapped)"),
            &["kind"],
        )?,
        registry,
    };
    let r = &m.registry;
    r.register(Box::new(m.requests.clone()))?;
    r.register(Box::new(m.request_seconds.clone()))?;
    r.register(Box::new(m.stage_seconds.clone()))?;
    r.register(Box::new(m.in_flight.clone()))?;
    r.register(Box::new(m.encode_batch_size.clone()))?;
    r.register(Box::new(m.ingest_group_size.clone()))?;
    r.register(Box::new(m.items.clone()))?;
    r.register(Box::new(m.layer_vectors.clone()))?;
    r.register(Box::new(m.generation.clone()))?;
    r.register(Box::new(m.rebuild_running.clone()))?;
    r.register(Box::new(m.rebuild_done.clone()))?;
    r.register(Box::new(m.rebuild_total.clone()))?;
    r.register(Box::new(m.memory_bytes.clone()))?;
    Ok(m)
}

static METRICS: LazyLock<Metrics> =
    // The definitions above are static; an error here is a programming error caught by the
    // unit test below, never a runtime condition.
    LazyLock::new(|| new_metrics().expect("metric definitions are valid"));

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// gRPC method path → short RPC label (`/mmsearch.v1.SearchService/Search` → `SearchService/Search`).
pub fn rpc_label(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        // Not a gRPC method (`/package.Service/Method`): the web pages and thumbnails, one
        // label for all so item ids never become label values.
        Some((service, _)) if !service.contains('.') => "web",
        None if !p.contains('.') => "web",
        Some((service, _)) => {
            let short = service.rsplit('.').next().unwrap_or(service);
            &p[service.len() - short.len()..]
        }
        None => p,
    }
}

pub fn observe_request(path: &str, code: tonic::Code, elapsed: Duration) {
    let m = metrics();
    let rpc = rpc_label(path);
    m.requests.with_label_values(&[rpc, code_label(code)]).inc();
    m.request_seconds
        .with_label_values(&[rpc])
        .observe(elapsed.as_secs_f64());
}

/// Items per batched model call on the ingest path, by modality.
pub fn observe_encode_batch(modality: &str, items: usize) {
    metrics()
        .encode_batch_size
        .with_label_values(&[modality])
        .observe(items as f64);
}

pub fn observe_stage(stage: &str, elapsed: Duration) {
    metrics()
        .stage_seconds
        .with_label_values(&[stage])
        .observe(elapsed.as_secs_f64());
}

pub fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Prometheus text exposition of everything registered.
pub fn render() -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&metrics().registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Resident set size of this process, from /proc (0 where /proc is unavailable).
pub fn rss_bytes() -> u64 {
    proc_memory_bytes("self", "VmRSS").unwrap_or(0)
}

/// A memory line of /proc/<pid>/status in bytes: `VmRSS` (resident now), `VmHWM` (peak
/// resident), `RssAnon` (heap), `RssFile` (mapped files); `pid` may be "self".
/// `None` where /proc is unavailable or the process is gone.
pub fn proc_memory_bytes(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    let kib: u64 = value.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_register_and_render() {
        observe_request(
            "/mmsearch.v1.SearchService/Search",
            tonic::Code::Ok,
            Duration::from_millis(3),
        );
        observe_stage("encode", Duration::from_millis(1));
        let text = render();
        assert!(
            text.contains("mmsearch_requests_total{code=\"OK\",rpc=\"SearchService/Search\"}"),
            "{text}"
        );
        assert!(
            text.contains("mmsearch_stage_duration_seconds_bucket{stage=\"encode\""),
            "{text}"
        );
    }

    #[test]
    fn rpc_labels_drop_the_package() {
        assert_eq!(
            rpc_label("/mmsearch.v1.SearchService/Search"),
            "SearchService/Search"
        );
        assert_eq!(rpc_label("/grpc.health.v1.Health/Check"), "Health/Check");
        assert_eq!(rpc_label("/weird"), "web");
        assert_eq!(rpc_label("/images/tripod"), "web");
    }

    #[test]
    fn rss_is_measured_on_linux() {
        assert!(rss_bytes() > 0);
    }
}
