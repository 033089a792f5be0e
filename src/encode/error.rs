use thiserror::Error;

/// Errors from the encoders. The variants map onto gRPC status codes in the API layer:
/// `InvalidInput` → INVALID_ARGUMENT, `TooLarge` → INVALID_ARGUMENT (or RESOURCE_EXHAUSTED),
/// `ModelUnavailable` → UNAVAILABLE / FAILED_PRECONDITION, the rest → INTERNAL.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// The caller's bytes or text cannot be encoded (corrupt image, not audio, empty text, ...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The input is well-formed but over a configured limit (pixels, audio seconds, batch size).
    #[error("input too large: {0}")]
    TooLarge(String),
    /// A model (or the ONNX Runtime library) is missing, unreadable or fails its checksum; also
    /// returned when a modality is asked for that is not configured (e.g. no speech model).
    #[error("model unavailable: {0}")]
    ModelUnavailable(String),
    /// Manifest or config is malformed.
    #[error("configuration error: {0}")]
    Config(String),
    /// ONNX Runtime failed during a run, or a graph returned something of the wrong shape.
    #[error("runtime error: {0}")]
    Runtime(String),
    /// The batcher was shut down while a request was queued.
    #[error("encoder shut down")]
    Shutdown,
    /// The request's deadline passed before the model work started; it was skipped.
    #[error("deadline exceeded before encoding started")]
    DeadlineExceeded,
}

impl EncodeError {
    pub(crate) fn runtime(context: &str, e: impl std::fmt::Display) -> Self {
        EncodeError::Runtime(format!("{context}: {e}"))
    }
}

pub type Result<T, E = EncodeError> = std::result::Result<T, E>;
