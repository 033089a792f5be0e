//! What the tools report with: a nearest-rank percentile and a process's memory.

/// The `p`-quantile (0..=1) of an ascending slice, nearest rank; 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}

/// A memory line of /proc/<pid>/status (see `mmsearch::telemetry::proc_memory_bytes`) in MiB.
pub fn proc_memory_mb(pid: u32, field: &str) -> Option<f64> {
    mmsearch::telemetry::proc_memory_bytes(&pid.to_string(), field)
        .map(|b| b as f64 / (1024.0 * 1024.0))
}
