//! Counters, latencies and failures of a soak run, the RSS/CSV sampler and the summary.

use mmsearch_tools::stats::percentile;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Request kinds, in CSV column order.
pub const KINDS: [&str; 9] = [
    "search_vector",
    "search_item",
    "search_filtered",
    "search_text",
    "upsert_stream",
    "delete",
    "get",
    "rebuild",
    "check",
];

/// Unexpected failures printed in full; later ones are only counted.
const PRINT_LIMIT: usize = 200;

#[derive(Default)]
struct Kind {
    ok: u64,
    expected_errors: u64,
    unexpected: u64,
    latencies_ms: Vec<f64>,
}

#[derive(Default)]
pub struct Stats {
    kinds: Mutex<BTreeMap<&'static str, Kind>>,
    unexpected_log: Mutex<Vec<String>>,
    pub acked_upserts: AtomicU64,
    pub acked_deletes: AtomicU64,
    /// Acknowledged writes the server no longer has (Get wrong/missing, or not in the index).
    pub lost: AtomicU64,
    /// Acknowledged deletes that are still visible.
    pub resurrected: AtomicU64,
    /// Self-queries whose own vector was not the top hit of the approximate search although the
    /// exact (filtered) search found it: a recall miss, not a lost write.
    pub ann_misses: AtomicU64,
    pub checks_ok: AtomicU64,
    /// Checks discarded because the id was written while they ran.
    pub checks_raced: AtomicU64,
}

impl Stats {
    pub fn ok(&self, kind: &'static str, took: Duration) {
        let mut k = self.kinds.lock();
        let e = k.entry(kind).or_default();
        e.ok += 1;
        e.latencies_ms.push(took.as_secs_f64() * 1e3);
    }

    pub fn expected(&self, kind: &'static str) {
        self.kinds.lock().entry(kind).or_default().expected_errors += 1;
    }

    /// A failed request or a wrong answer that the workload did not provoke on purpose.
    pub fn unexpected(&self, kind: &'static str, what: String) {
        self.kinds.lock().entry(kind).or_default().unexpected += 1;
        let mut log = self.unexpected_log.lock();
        if log.len() < PRINT_LIMIT {
            eprintln!("UNEXPECTED [{kind}] {what}");
            log.push(format!("[{kind}] {what}"));
        }
    }

    pub fn requests(&self, kind: &str) -> u64 {
        self.kinds
            .lock()
            .get(kind)
            .map_or(0, |k| k.ok + k.expected_errors + k.unexpected)
    }

    pub fn unexpected_total(&self) -> u64 {
        self.kinds.lock().values().map(|k| k.unexpected).sum()
    }

    pub fn kinds_json(&self) -> serde_json::Value {
        let mut kinds = self.kinds.lock();
        let mut out = serde_json::Map::new();
        for (name, k) in kinds.iter_mut() {
            k.latencies_ms.sort_by(f64::total_cmp);
            out.insert(
                name.to_string(),
                serde_json::json!({
                    "requests": k.ok + k.expected_errors + k.unexpected,
                    "ok": k.ok,
                    "expected_errors": k.expected_errors,
                    "unexpected_errors": k.unexpected,
                    "p50_ms": round3(percentile(&k.latencies_ms, 0.5)),
                    "p99_ms": round3(percentile(&k.latencies_ms, 0.99)),
                }),
            );
        }
        serde_json::Value::Object(out)
    }

    pub fn unexpected_samples(&self) -> Vec<String> {
        self.unexpected_log
            .lock()
            .iter()
            .take(20)
            .cloned()
            .collect()
    }

    pub fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    pub fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Resident memory of a process in MiB, from /proc/<pid>/status.
pub fn rss_mb(pid: u32) -> Option<f64> {
    mmsearch_tools::stats::proc_memory_mb(pid, "VmRSS")
}

/// The only running `mmsearch serve` process, if there is exactly one.
pub fn find_server_pid() -> Option<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_server = args
            .first()
            .is_some_and(|a| a.ends_with(b"/mmsearch") || *a == b"mmsearch")
            && args.get(1).is_some_and(|a| *a == b"serve");
        if is_server {
            found.push(pid);
        }
    }
    (found.len() == 1).then(|| found[0])
}

/// One CSV row per sample; the header is written when the file is new.
pub struct Csv {
    file: std::fs::File,
}

impl Csv {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Csv> {
        use std::io::Write;
        let fresh = !path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        if fresh {
            writeln!(
                file,
                "t_s,phase,rss_mb,items,generation,fresh_vectors,{},unexpected_errors",
                KINDS.join(",")
            )?;
        }
        Ok(Csv { file })
    }

    pub fn row(
        &mut self,
        t_s: f64,
        phase: usize,
        rss: Option<f64>,
        status: Option<(u64, u64, u64)>,
        stats: &Stats,
    ) -> anyhow::Result<()> {
        use std::io::Write;
        let counts: Vec<String> = KINDS
            .iter()
            .map(|k| stats.requests(k).to_string())
            .collect();
        let (items, generation, fresh) = status.map_or(
            (String::new(), String::new(), String::new()),
            |(a, b, c)| (a.to_string(), b.to_string(), c.to_string()),
        );
        writeln!(
            self.file,
            "{t_s:.1},{phase},{},{items},{generation},{fresh},{},{}",
            rss.map_or(String::new(), |r| format!("{r:.1}")),
            counts.join(","),
            stats.unexpected_total()
        )?;
        Ok(())
    }
}
