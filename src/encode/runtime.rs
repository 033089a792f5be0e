//! ONNX Runtime bootstrap and session pooling.
//!
//! `ort` with `load-dynamic` allows exactly one `Environment` per process (a second `build()` errors
//! even after the first is dropped), so the environment lives in a process-wide `OnceLock` and every
//! `Encoders::load` reuses it. `Session::run` takes `&mut self`, so concurrent callers go through a
//! [`SessionPool`] of independent sessions, each behind its own mutex.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub use ort::environment::Environment;
use ort::ep;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::error::{EncodeError, Result};

/// Execution provider requested in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Cpu,
    Cuda,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
        })
    }
}

static ENV: OnceLock<(Environment, PathBuf)> = OnceLock::new();
static ENV_INIT: Mutex<()> = Mutex::new(());

/// Default places to look for `libonnxruntime.so` when the config names none: `ORT_DYLIB_PATH`, then
/// the layout `models/setup.sh` produces next to the models.
fn default_dylib(model_dir: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    let lib = model_dir.join("onnxruntime").join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    let mut best: Option<PathBuf> = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("libonnxruntime.so") {
            // prefer the fully versioned file (the symlinks may not have survived a copy)
            let better = match &best {
                None => true,
                Some(b) => name.len() > b.file_name().map(|n| n.len()).unwrap_or(0),
            };
            if better {
                best = Some(e.path());
            }
        }
    }
    best
}

/// Returns the process-wide ORT environment, loading the dylib on first use.
pub fn environment(dylib: Option<&Path>, model_dir: &Path) -> Result<Environment> {
    if let Some((env, _)) = ENV.get() {
        return Ok(env.clone());
    }
    let _g = ENV_INIT.lock();
    if let Some((env, _)) = ENV.get() {
        return Ok(env.clone());
    }
    let path = match dylib {
        Some(p) => p.to_path_buf(),
        None => default_dylib(model_dir).ok_or_else(|| {
            EncodeError::ModelUnavailable(format!(
                "no ONNX Runtime library configured: set encode.ort_dylib or ORT_DYLIB_PATH, or run models/setup.sh (looked in {})",
                model_dir.join("onnxruntime/lib").display()
            ))
        })?,
    };
    if !path.exists() {
        return Err(EncodeError::ModelUnavailable(format!(
            "ONNX Runtime library {} does not exist (run models/setup.sh)",
            path.display()
        )));
    }
    let builder = ort::init_from(&path).map_err(|e| {
        EncodeError::ModelUnavailable(format!("loading ONNX Runtime from {}: {e}", path.display()))
    })?;
    let env = builder.with_name("mmsearch").build().map_err(|e| {
        EncodeError::ModelUnavailable(format!("creating ONNX Runtime environment: {e}"))
    })?;
    let _ = ENV.set((env.clone(), path));
    Ok(env)
}

/// How sessions of one model are built.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub provider: Provider,
    /// Intra-op threads per session; 0 lets ORT pick (one per core).
    pub intra_threads: usize,
    pub sessions: usize,
}

/// `sessions` copies of one graph. Each copy holds its own weights, so memory grows linearly; on
/// a small CPU box 1–2 sessions with `intra_threads` = cores is usually the best trade-off.
pub struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    provider_in_use: Provider,
    path: PathBuf,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("path", &self.path)
            .field("sessions", &self.sessions.len())
            .field("provider_in_use", &self.provider_in_use)
            .finish()
    }
}

fn build_session(
    env: &Environment,
    path: &Path,
    opts: &SessionOptions,
) -> Result<(Session, Provider)> {
    let err = |e: ort::Error<_>| {
        EncodeError::runtime(&format!("session options for {}", path.display()), e)
    };
    let mut b = Session::builder(env).map_err(|e| EncodeError::runtime("session builder", e))?;
    b = b
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(err)?;
    b = b.with_intra_threads(opts.intra_threads).map_err(err)?;
    // Spinning burns the cores between requests; on a shared 2-core box it starves the other
    // sessions and the gRPC threads, so it is switched off.
    b = b.with_intra_op_spinning(false).map_err(err)?;
    let mut provider = Provider::Cpu;
    if opts.provider == Provider::Cuda {
        // `error_on_failure` turns ORT's silent CPU fallback into an Err so we know (and can
        // report) which provider is really in use.
        let cuda = ep::CUDA::default()
            .with_device_id(0)
            .build()
            .error_on_failure();
        match b.with_execution_providers([cuda]) {
            Ok(nb) => {
                b = nb;
                provider = Provider::Cuda;
            }
            Err(e) => {
                tracing::warn!(model = %path.display(), error = %e, "CUDA execution provider unavailable; falling back to CPU");
                b = e.recover();
            }
        }
    }
    let session = b
        .commit_from_file(path)
        .map_err(|e| EncodeError::ModelUnavailable(format!("loading {}: {e}", path.display())))?;
    Ok((session, provider))
}

impl SessionPool {
    pub fn load(env: &Environment, path: &Path, opts: &SessionOptions) -> Result<Self> {
        if !path.is_file() {
            return Err(EncodeError::ModelUnavailable(format!(
                "{} not found",
                path.display()
            )));
        }
        let n = opts.sessions.max(1);
        let mut sessions = Vec::with_capacity(n);
        let mut provider_in_use = Provider::Cpu;
        for i in 0..n {
            let (s, p) = build_session(env, path, opts)?;
            if i == 0 {
                provider_in_use = p;
            }
            sessions.push(Mutex::new(s));
        }
        tracing::info!(model = %path.display(), sessions = n, provider = %provider_in_use, "loaded ONNX model");
        Ok(Self {
            sessions,
            next: AtomicUsize::new(0),
            provider_in_use,
            path: path.to_path_buf(),
        })
    }

    pub fn provider_in_use(&self) -> Provider {
        self.provider_in_use
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Input names of the graph (all sessions share one graph).
    pub fn input_names(&self) -> Vec<String> {
        self.sessions[0]
            .lock()
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    }

    pub fn output_names(&self) -> Vec<String> {
        self.sessions[0]
            .lock()
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    }

    /// Runs `f` with exclusive access to one session: the first free one starting at a round-robin
    /// offset, or — if all are busy — waits on the round-robin pick.
    pub fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Some(mut s) = self.sessions[(start + i) % n].try_lock() {
                return f(&mut s);
            }
        }
        let mut s = self.sessions[start].lock();
        f(&mut s)
    }
}
