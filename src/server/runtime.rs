//! `[runtime]`: the tokio runtime the server runs on, sized from the config rather than tokio's
//! defaults. Search, Get, Upsert, Delete and Status run their work on the blocking pool; tokio's
//! default cap of 512 blocking threads lets a burst of searches (the admission gate lets 64 run)
//! start one thread each, and on glibc every busy thread may claim its own malloc arena: memory
//! that stays after the burst. CPU-bound work gains nothing from more threads than cores.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Async worker threads (gRPC I/O, request layers). 0 = one per core.
    pub worker_threads: usize,
    /// Cap on the blocking pool that runs searches, reads and the writer. 0 = 4 per core, at
    /// least 8: searches beyond the cores only queue for CPU, while writes waiting on the WAL's
    /// fsync and slow image decodes should not hold every thread.
    pub max_blocking_threads: usize,
}

impl RuntimeConfig {
    pub fn cores() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }

    pub fn effective_worker_threads(&self) -> usize {
        if self.worker_threads == 0 {
            Self::cores()
        } else {
            self.worker_threads
        }
    }

    pub fn effective_max_blocking_threads(&self) -> usize {
        if self.max_blocking_threads == 0 {
            (4 * Self::cores()).max(8)
        } else {
            self.max_blocking_threads
        }
    }

    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.effective_worker_threads())
            .max_blocking_threads(self.effective_max_blocking_threads())
            .thread_name("mmsearch")
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_cores_and_settings_win() {
        let d = RuntimeConfig::default();
        assert_eq!(d.effective_worker_threads(), RuntimeConfig::cores());
        assert_eq!(
            d.effective_max_blocking_threads(),
            (4 * RuntimeConfig::cores()).max(8)
        );
        let c = RuntimeConfig {
            worker_threads: 3,
            max_blocking_threads: 5,
        };
        assert_eq!(
            (
                c.effective_worker_threads(),
                c.effective_max_blocking_threads()
            ),
            (3, 5)
        );
    }

    #[test]
    fn the_blocking_pool_is_capped() {
        let rt = RuntimeConfig {
            worker_threads: 1,
            max_blocking_threads: 2,
        }
        .build()
        .expect("runtime");
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let now = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        rt.block_on(async {
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (peak, now) = (peak.clone(), now.clone());
                    tokio::task::spawn_blocking(move || {
                        let n = now.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        peak.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        now.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        });
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
