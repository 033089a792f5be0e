//! Helpers for the load, soak and scale tools: a bearer-authenticated channel from an
//! address and key, the percentile they report with, and a process's memory. The connection logic itself
//! (TLS, API key) lives in [`crate::client`].

use crate::client::ClientOptions;
pub use crate::client::AuthChannel;

/// A channel to `addr` whose calls carry `key`, if given.
pub async fn auth_channel(addr: &str, key: Option<&str>) -> anyhow::Result<AuthChannel> {
    let opts = ClientOptions { server: addr.to_string(), api_key: key.map(String::from), ..Default::default() };
    Ok(opts.connect().await?.channel())
}

/// The `p`-quantile (0..=1) of an ascending slice, nearest rank; 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// A memory line of /proc/<pid>/status (see [`crate::telemetry::proc_memory_bytes`]) in MiB.
pub fn proc_memory_mb(pid: u32, field: &str) -> Option<f64> {
    crate::telemetry::proc_memory_bytes(&pid.to_string(), field).map(|b| b as f64 / (1024.0 * 1024.0))
}
