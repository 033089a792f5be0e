//! `model.toml` manifests (schema: `models/MANIFEST.md`).
//!
//! Unknown keys and tables are ignored, as the schema requires, so the models pipeline can add
//! fields without breaking older servers. Kind-specific `[preprocess]` keys are all optional here
//! and validated by the encoder that needs them, which can name the exact missing key.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{EncodeError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Text,
    ImageClassifier,
    Whisper,
    ClipText,
    ClipImage,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Text => "text",
            ModelKind::ImageClassifier => "image_classifier",
            ModelKind::Whisper => "whisper",
            ModelKind::ClipText => "clip_text",
            ModelKind::ClipImage => "clip_image",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub sha256: String,
    #[serde(default)]
    pub role: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Io {
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Source {
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub registry: String,
}

/// Union of every kind's `[preprocess]` keys.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Preprocess {
    // text / clip_text
    pub max_tokens: Option<usize>,
    pub pad_id: Option<u32>,
    pub context_length: Option<usize>,
    pub tokenizer: Option<String>,
    /// Prepended to search queries / item texts before tokenising (e5: "query: ", "passage: ").
    pub query_prefix: Option<String>,
    pub passage_prefix: Option<String>,
    // image_classifier / clip_image
    pub size: Option<u32>,
    pub resize: Option<String>,
    pub filter: Option<String>,
    pub background: Option<String>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    // whisper
    pub sample_rate: Option<u32>,
    pub n_mels: Option<usize>,
    pub n_fft: Option<usize>,
    pub hop: Option<usize>,
    pub chunk_seconds: Option<f32>,
    pub n_samples: Option<usize>,
    pub n_frames: Option<usize>,
    /// Present when the encoder was exported to run over fewer than `n_frames` frames (its
    /// positional table sliced to the input): the smallest window it was checked at.
    pub min_frames: Option<usize>,
    pub mel_filters: Option<String>,
    pub n_layers: Option<usize>,
    pub d_model: Option<usize>,
    pub vocab_size: Option<usize>,
    pub n_text_ctx: Option<usize>,
    pub max_new_tokens: Option<usize>,
    pub multilingual: Option<bool>,
    pub sot: Option<u32>,
    pub eot: Option<u32>,
    pub notimestamps: Option<u32>,
    pub no_speech: Option<u32>,
    pub timestamp_begin: Option<u32>,
    pub prompt: Option<Vec<u32>>,
    pub suppress_tokens: Option<Vec<u32>>,
    pub begin_suppress_tokens: Option<Vec<u32>>,
    /// Multilingual Whisper: every language token id and its code, in the same order.
    pub language_tokens: Option<Vec<u32>>,
    pub languages: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BridgeSection {
    #[serde(default)]
    pub text_model: String,
    /// In a text model's manifest: the image classifier whose class prompts this table holds
    /// (embedded with this text model); empty in an image model's own manifest.
    #[serde(default)]
    pub image_model: String,
    pub dim: usize,
    #[serde(default = "default_classes")]
    pub classes: usize,
    pub class_prompts: String,
    pub top_k: Option<usize>,
    pub temperature: Option<f32>,
    pub class_template: Option<String>,
    pub query_template: Option<String>,
}

fn default_classes() -> usize {
    1000
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub id: String,
    pub kind: ModelKind,
    pub dim: usize,
    #[serde(default)]
    pub licence: String,
    #[serde(default)]
    pub source: Source,
    #[serde(default)]
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub io: Io,
    #[serde(default)]
    pub preprocess: Preprocess,
    pub bridge: Option<BridgeSection>,
    pub pair: Option<String>,
    pub classes: Option<usize>,
    /// Directory holding the `model.toml`; every file path is relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads `<dir>/model.toml`; with `verify`, hashes every listed file against its sha256.
    pub fn load(dir: &Path, verify: bool) -> Result<Self> {
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            EncodeError::ModelUnavailable(format!("{}: {e} (run models/setup.sh?)", path.display()))
        })?;
        let mut m: Manifest = toml::from_str(&text)
            .map_err(|e| EncodeError::Config(format!("{}: {e}", path.display())))?;
        m.dir = dir.to_path_buf();
        for f in &m.files {
            let p = m.dir.join(&f.name);
            if !p.is_file() {
                return Err(EncodeError::ModelUnavailable(format!(
                    "{} (listed in {}) is missing",
                    p.display(),
                    path.display()
                )));
            }
            if verify {
                let got = sha256_file(&p)?;
                if !got.eq_ignore_ascii_case(f.sha256.trim()) {
                    return Err(EncodeError::ModelUnavailable(format!(
                        "{}: sha256 {got} does not match the manifest's {}",
                        p.display(),
                        f.sha256
                    )));
                }
            }
        }
        Ok(m)
    }

    /// Path of the file with `role`, falling back to `default_name` when no entry has that role.
    pub fn file_by_role(&self, role: &str, default_name: &str) -> PathBuf {
        self.files
            .iter()
            .find(|f| f.role == role)
            .map(|f| self.dir.join(&f.name))
            .unwrap_or_else(|| self.dir.join(default_name))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn require<T: Clone>(&self, v: &Option<T>, key: &str) -> Result<T> {
        v.clone().ok_or_else(|| {
            EncodeError::Config(format!(
                "{}/model.toml: [preprocess] {key} is required for kind {}",
                self.dir.display(),
                self.kind
            ))
        })
    }

    /// Graph I/O name at `idx` of `[io] inputs`/`outputs`, or `default` when the list is short.
    pub fn input(&self, idx: usize, default: &str) -> String {
        self.io
            .inputs
            .get(idx)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn output(&self, idx: usize, default: &str) -> String {
        self.io
            .outputs
            .get(idx)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

pub fn sha256_file(p: &Path) -> Result<String> {
    let mut f = std::fs::File::open(p)
        .map_err(|e| EncodeError::ModelUnavailable(format!("{}: {e}", p.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| EncodeError::ModelUnavailable(format!("{}: {e}", p.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads a headerless little-endian f32 array and checks its element count.
pub fn read_f32(p: &Path, expect_len: Option<usize>) -> Result<Vec<f32>> {
    let bytes = std::fs::read(p)
        .map_err(|e| EncodeError::ModelUnavailable(format!("{}: {e}", p.display())))?;
    if bytes.len() % 4 != 0 {
        return Err(EncodeError::Config(format!(
            "{}: size {} is not a multiple of 4",
            p.display(),
            bytes.len()
        )));
    }
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(n) = expect_len {
        if v.len() != n {
            return Err(EncodeError::Config(format!(
                "{}: {} floats, expected {n}",
                p.display(),
                v.len()
            )));
        }
    }
    Ok(v)
}

/// Every manifest under `root` (one directory level), keyed by directory name.
pub fn discover(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let rd = std::fs::read_dir(root).map_err(|e| {
        EncodeError::ModelUnavailable(format!(
            "model dir {}: {e} (run models/setup.sh)",
            root.display()
        ))
    })?;
    for e in rd.flatten() {
        let p = e.path();
        if p.join("model.toml").is_file() {
            out.insert(e.file_name().to_string_lossy().into_owned(), p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_ignores_unknown() {
        let t = r#"
id = "x"
kind = "image_classifier"
dim = 1280
licence = "Apache-2.0"
classes = 1000
future_key = 3
[source]
package = "p"
version = "1"
registry = "pypi"
[[files]]
name = "model.onnx"
sha256 = "00"
role = "model"
[io]
inputs = ["image"]
outputs = ["logits", "features"]
[preprocess]
size = 224
mean = [127.0, 127.0, 127.0]
std = [128.0, 128.0, 128.0]
unknown = "ok"
[bridge]
text_model = "minilm-l6-v2"
dim = 384
classes = 1000
class_prompts = "class_prompts.f32"
top_k = 20
temperature = 2.0
[other_table]
a = 1
"#;
        let m: Manifest = toml::from_str(t).expect("parse");
        assert_eq!(m.kind, ModelKind::ImageClassifier);
        assert_eq!(m.preprocess.size, Some(224));
        assert_eq!(m.bridge.as_ref().map(|b| b.dim), Some(384));
    }
}
