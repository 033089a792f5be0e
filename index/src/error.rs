use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("dimension mismatch: space expects {expected}, got {got}")]
    Dimension { expected: usize, got: usize },
    #[error("vector contains NaN or infinite values")]
    NonFinite,
    #[error("zero vector cannot be normalised for cosine search")]
    ZeroVector,
    #[error("corrupt index file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid index parameter: {0}")]
    Parameter(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hnsw_rs: {0}")]
    Hnsw(String),
}

pub type Result<T> = std::result::Result<T, IndexError>;

pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| IndexError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
