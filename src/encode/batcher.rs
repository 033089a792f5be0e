//! Dynamic batching for ingest and for search queries: callers submit single texts/images and await their vectors; a
//! background task gathers up to `max_batch` items (or whatever arrived within `max_wait` of the
//! first one) and runs them as one model call on the blocking pool.
//!
//! Batches of one modality run one at a time: on a small CPU box a second concurrent batch would
//! only fight the first for cores, and the queue keeps filling meanwhile, so the next batch is
//! fuller. With `max_wait_ms = 0` (search queries) a caller that finds nothing running and
//! nothing queued runs its item itself: a lone query then costs what it did unbatched, instead
//! of two more thread hand-offs (≈ 1.6 ms p50 on 2 cores, where ONNX Runtime's spinning threads
//! delay every wake-up). If a batch fails with a per-input error (a corrupt image, an empty title), it is rerun
//! item by item so one bad input only fails its own request.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::error::{EncodeError, Result};
use super::observe::{EncodeObserver, Modality};
use super::{Encoders, ImageVectors};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BatcherConfig {
    pub max_batch: usize,
    /// How long the first item of a batch may wait for company.
    pub max_wait_ms: u64,
    /// Queue length per modality; `submit` waits (backpressure) when it is full.
    pub queue: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait_ms: 5,
            queue: 1024,
        }
    }
}

type Job<I, O> = (I, oneshot::Sender<Result<O>>);
type BatchFn<I, O> = dyn Fn(&[I]) -> Result<Vec<O>> + Send + Sync;

/// One queue + worker task for a batched function `f(&[I]) -> Result<Vec<O>>`.
pub struct Batcher<I, O> {
    tx: mpsc::Sender<Job<I, O>>,
    /// One permit, held by whichever model call of this modality runs (a batch or an inline item).
    running: Arc<Semaphore>,
    /// `f`, when a lone item may run inline (`max_wait_ms = 0`).
    inline: Option<Arc<BatchFn<I, O>>>,
    modality: Modality,
    observer: Arc<dyn EncodeObserver>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            running: Arc::clone(&self.running),
            inline: self.inline.clone(),
            modality: self.modality,
            observer: Arc::clone(&self.observer),
        }
    }
}

fn is_per_item(e: &EncodeError) -> bool {
    matches!(e, EncodeError::InvalidInput(_) | EncodeError::TooLarge(_))
}

/// `f` over one item alone.
fn run_one<I, O>(f: &BatchFn<I, O>, item: &I) -> Result<O> {
    f(std::slice::from_ref(item))?
        .pop()
        .ok_or_else(|| EncodeError::Runtime("empty result".into()))
}

fn panicked(e: &tokio::task::JoinError) -> EncodeError {
    EncodeError::Runtime(format!("encoder task panicked: {e}"))
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Spawns the worker on the current tokio runtime. Every batch's size is reported to
    /// `observer` under `modality`.
    pub fn spawn<F>(
        cfg: &BatcherConfig,
        modality: Modality,
        observer: Arc<dyn EncodeObserver>,
        f: F,
    ) -> Self
    where
        F: Fn(&[I]) -> Result<Vec<O>> + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let max_wait = Duration::from_millis(cfg.max_wait_ms);
        let f: Arc<BatchFn<I, O>> = Arc::new(f);
        let running = Arc::new(Semaphore::new(1));
        tokio::spawn(run_worker(
            rx,
            Arc::clone(&f),
            Arc::clone(&running),
            modality,
            Arc::clone(&observer),
            cfg.max_batch.max(1),
            max_wait,
        ));
        Self {
            tx,
            running,
            inline: (cfg.max_wait_ms == 0).then_some(f),
            modality,
            observer,
        }
    }

    pub async fn submit(&self, item: I) -> Result<O> {
        if let Some(f) = &self.inline {
            // Nothing queued and no model call running: nobody to batch with.
            if self.tx.capacity() == self.tx.max_capacity() {
                if let Ok(permit) = Arc::clone(&self.running).try_acquire_owned() {
                    self.observer.batched(self.modality, 1);
                    let f = Arc::clone(f);
                    return tokio::task::spawn_blocking(move || {
                        let _running = permit;
                        run_one(f.as_ref(), &item)
                    })
                    .await
                    .map_err(|e| panicked(&e))?;
                }
            }
        }
        let (otx, orx) = oneshot::channel();
        self.tx
            .send((item, otx))
            .await
            .map_err(|_| EncodeError::Shutdown)?;
        orx.await.map_err(|_| EncodeError::Shutdown)?
    }
}

async fn run_worker<I, O>(
    mut rx: mpsc::Receiver<Job<I, O>>,
    f: Arc<BatchFn<I, O>>,
    running: Arc<Semaphore>,
    modality: Modality,
    observer: Arc<dyn EncodeObserver>,
    max_batch: usize,
    max_wait: Duration,
) where
    I: Send + 'static,
    O: Send + 'static,
{
    while let Some(first) = rx.recv().await {
        // Gathered after the running call ends, so everything that queued meanwhile joins.
        let Ok(permit) = Arc::clone(&running).acquire_owned().await else {
            break;
        };
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + max_wait;
        while jobs.len() < max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) | Err(_) => break,
            }
        }
        observer.batched(modality, jobs.len());
        let (items, txs): (Vec<I>, Vec<_>) = jobs.into_iter().unzip();
        let f2 = Arc::clone(&f);
        let res = tokio::task::spawn_blocking(move || {
            let _running = permit;
            let r = f2(&items);
            match r {
                Ok(v) if v.len() == items.len() => v.into_iter().map(Ok).collect::<Vec<_>>(),
                Ok(v) => {
                    let msg = format!("batch of {} returned {} results", items.len(), v.len());
                    items
                        .iter()
                        .map(|_| Err(EncodeError::Runtime(msg.clone())))
                        .collect()
                }
                Err(e) if is_per_item(&e) && items.len() > 1 => {
                    items.iter().map(|it| run_one(f2.as_ref(), it)).collect()
                }
                Err(e) => {
                    let msg = e.to_string();
                    let mut out: Vec<Result<O>> = Vec::with_capacity(items.len());
                    out.push(Err(e));
                    out.extend((1..items.len()).map(|_| Err(EncodeError::Runtime(msg.clone()))));
                    out
                }
            }
        })
        .await;
        match res {
            Ok(results) => {
                for (tx, r) in txs.into_iter().zip(results) {
                    let _ = tx.send(r);
                }
            }
            Err(join) => {
                for tx in txs {
                    let _ = tx.send(Err(panicked(&join)));
                }
            }
        }
    }
}

/// Batched front door to [`Encoders::embed_queries`] for search: concurrent text queries share
/// one model call. With `max_wait_ms = 0` a query never waits for company — a batch is whatever
/// queued while the previous one ran — so an idle server answers as fast as unbatched, and a
/// busy one runs one call of up to `max_batch` queries instead of one call each (on a 2-core
/// box MiniLM saturated at ≈ 155 single-query calls/s).
#[derive(Clone)]
pub struct QueryBatcher {
    queries: Batcher<String, Vec<f32>>,
}

impl QueryBatcher {
    /// Must be called inside a tokio runtime.
    pub fn spawn(encoders: Arc<Encoders>, cfg: &BatcherConfig) -> Self {
        let observer = Arc::clone(encoders.observer());
        let queries = Batcher::spawn(cfg, Modality::Query, observer, move |items: &[String]| {
            let refs: Vec<&str> = items.iter().map(String::as_str).collect();
            encoders.embed_queries(&refs)
        });
        Self { queries }
    }

    /// Query text → shared-space unit vector (the query template and prefix applied).
    pub async fn embed_query(&self, text: String) -> Result<Vec<f32>> {
        self.queries.submit(text).await
    }
}

/// Batched front door to [`Encoders`] for the ingest path.
#[derive(Clone)]
pub struct EncodeBatcher {
    texts: Batcher<String, Vec<f32>>,
    images: Batcher<Vec<u8>, ImageVectors>,
}

impl EncodeBatcher {
    /// Must be called inside a tokio runtime. Batch sizes go to the encoders' observer
    /// ([`Encoders::load_with`]).
    pub fn spawn(encoders: Arc<Encoders>, cfg: &BatcherConfig) -> Self {
        let observer = Arc::clone(encoders.observer());
        let e1 = Arc::clone(&encoders);
        let texts = Batcher::spawn(
            cfg,
            Modality::Text,
            Arc::clone(&observer),
            move |items: &[String]| {
                let refs: Vec<&str> = items.iter().map(String::as_str).collect();
                e1.embed_texts(&refs)
            },
        );
        let e2 = encoders;
        let images = Batcher::spawn(
            cfg,
            Modality::Image,
            observer,
            move |items: &[Vec<u8>]| {
                let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
                e2.embed_images(&refs)
            },
        );
        Self { texts, images }
    }

    /// Item text (title/description) → shared-space unit vector.
    pub async fn embed_text(&self, text: String) -> Result<Vec<f32>> {
        self.texts.submit(text).await
    }

    pub async fn embed_image(&self, bytes: Vec<u8>) -> Result<ImageVectors> {
        self.images.submit(bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::observe::NoopObserver;
    use std::sync::Mutex;

    /// Doubles each input, recording the batch sizes; the first call is slow.
    fn doubler(sizes: Arc<Mutex<Vec<usize>>>) -> impl Fn(&[u32]) -> Result<Vec<u32>> {
        move |items: &[u32]| {
            let first = {
                let mut s = sizes.lock().unwrap();
                s.push(items.len());
                s.len() == 1
            };
            if first {
                std::thread::sleep(Duration::from_millis(300));
            }
            Ok(items.iter().map(|x| x * 2).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_item_runs_inline_and_what_queues_behind_it_is_one_batch() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let cfg = BatcherConfig {
            max_batch: 32,
            max_wait_ms: 0,
            queue: 64,
        };
        let b = Batcher::spawn(
            &cfg,
            Modality::Query,
            Arc::new(NoopObserver),
            doubler(Arc::clone(&sizes)),
        );
        let lone = tokio::spawn({
            let b = b.clone();
            async move { b.submit(1).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rest: Vec<_> = (2..7u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(i).await })
            })
            .collect();
        assert_eq!(lone.await.unwrap().unwrap(), 2);
        for (i, r) in (2..7u32).zip(rest) {
            assert_eq!(r.await.unwrap().unwrap(), i * 2);
        }
        // The lone item ran by itself (no waiting for company), the five that arrived while it
        // ran were gathered into one call, not run beside it.
        assert_eq!(*sizes.lock().unwrap(), vec![1, 5]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_wait_every_item_goes_through_the_queue() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let cfg = BatcherConfig {
            max_batch: 32,
            max_wait_ms: 100,
            queue: 64,
        };
        let b = Batcher::spawn(
            &cfg,
            Modality::Text,
            Arc::new(NoopObserver),
            doubler(Arc::clone(&sizes)),
        );
        let all: Vec<_> = (1..4u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(i).await })
            })
            .collect();
        for (i, r) in (1..4u32).zip(all) {
            assert_eq!(r.await.unwrap().unwrap(), i * 2);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![3]);
    }
}
