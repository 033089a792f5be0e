//! Text towers: sentence-transformers style (`kind = "text"`, MiniLM) and CLIP text (`clip_text`).
//! Both return unit vectors in the shared space; normalisation happens in the graph, and is
//! re-applied here so a slightly-off graph cannot leak non-unit vectors into the index.

use std::path::Path;

use ort::value::Tensor;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::error::{EncodeError, Result};
use super::manifest::{Manifest, ModelKind};
use super::runtime::{Environment, SessionOptions, SessionPool};
use mmsearch_index::metric::normalized;

/// Graphs are run in chunks of this many texts so one huge request cannot allocate [B, 256, 384]
/// activations for thousands of rows at once.
const MAX_RUN_BATCH: usize = 64;

/// Which side of a search a text is on. Models trained with asymmetric prefixes (e5: "query: " /
/// "passage: ") need to know; for the others both roles embed the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextRole {
    Query,
    Passage,
}

pub struct TextEncoder {
    pub(crate) manifest: Manifest,
    pool: SessionPool,
    tokenizer: Tokenizer,
    /// Graph inputs we feed, in the order of `[io] inputs` (subset of ids / mask / type ids).
    inputs: Vec<String>,
    output: String,
    dim: usize,
    /// clip_text pads every row to exactly this length (the graph's position table is fixed).
    fixed_len: Option<usize>,
    /// `[preprocess] query_prefix` / `passage_prefix` ("" when the model has none).
    query_prefix: String,
    passage_prefix: String,
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path)
        .map_err(|e| EncodeError::ModelUnavailable(format!("tokenizer {}: {e}", path.display())))
}

impl TextEncoder {
    pub fn load(env: &Environment, manifest: Manifest, opts: &SessionOptions) -> Result<Self> {
        let p = &manifest.preprocess;
        let (max_len, pad_id, fixed_len, default_inputs, default_output) = match manifest.kind {
            ModelKind::Text => (
                p.max_tokens.unwrap_or(256),
                p.pad_id.unwrap_or(0),
                None,
                vec!["input_ids", "attention_mask", "token_type_ids"],
                "sentence_embedding",
            ),
            ModelKind::ClipText => {
                let ctx = p.context_length.unwrap_or(77);
                (
                    ctx,
                    p.pad_id.unwrap_or(0),
                    Some(ctx),
                    vec!["input_ids"],
                    "text_embeds",
                )
            }
            k => {
                return Err(EncodeError::Config(format!(
                    "{} is a {k} model, not a text model",
                    manifest.id
                )))
            }
        };
        let tok_path = match &p.tokenizer {
            Some(t) => manifest.path(t),
            None => manifest.file_by_role("tokenizer", "tokenizer.json"),
        };
        let mut tokenizer = load_tokenizer(&tok_path)?;
        let pad_token = tokenizer
            .id_to_token(pad_id)
            .unwrap_or_else(|| "[PAD]".to_string());
        tokenizer.with_padding(Some(PaddingParams {
            strategy: match fixed_len {
                Some(n) => PaddingStrategy::Fixed(n),
                None => PaddingStrategy::BatchLongest,
            },
            pad_id,
            pad_token,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| EncodeError::Config(format!("tokenizer truncation: {e}")))?;

        let model_path = manifest.file_by_role("model", "model.onnx");
        let pool = SessionPool::load(env, &model_path, opts)?;
        let graph_inputs = pool.input_names();
        let inputs: Vec<String> = if manifest.io.inputs.is_empty() {
            default_inputs
                .iter()
                .map(|s| s.to_string())
                .filter(|n| graph_inputs.contains(n))
                .collect()
        } else {
            manifest.io.inputs.clone()
        };
        for i in &inputs {
            if !graph_inputs.contains(i) {
                return Err(EncodeError::Config(format!(
                    "{}: graph has no input {i:?} (has {graph_inputs:?})",
                    manifest.id
                )));
            }
        }
        let output = manifest.output(0, default_output);
        let dim = manifest.dim;
        let query_prefix = p.query_prefix.clone().unwrap_or_default();
        let passage_prefix = p.passage_prefix.clone().unwrap_or_default();
        Ok(Self {
            manifest,
            pool,
            tokenizer,
            inputs,
            output,
            dim,
            fixed_len,
            query_prefix,
            passage_prefix,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    /// Token ids of the texts as given, without the role's prefix (for golden tests).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<tokenizers::Encoding>> {
        self.tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EncodeError::InvalidInput(format!("tokenizing: {e}")))
    }

    /// Token ids exactly as the graph sees them for `role` (prefix included).
    pub fn tokenize_as(&self, texts: &[&str], role: TextRole) -> Result<Vec<tokenizers::Encoding>> {
        let owned = self.prefixed(texts, role);
        self.tokenize(&owned.iter().map(String::as_str).collect::<Vec<_>>())
    }

    pub fn prefix(&self, role: TextRole) -> &str {
        match role {
            TextRole::Query => &self.query_prefix,
            TextRole::Passage => &self.passage_prefix,
        }
    }

    fn prefixed(&self, texts: &[&str], role: TextRole) -> Vec<String> {
        let p = self.prefix(role);
        texts.iter().map(|t| format!("{p}{t}")).collect()
    }

    /// One unit vector per text. Empty / whitespace-only texts are rejected: they would embed to
    /// the mean of `[CLS] [SEP]` (plus the prefix), which matches everything equally badly.
    pub fn embed(&self, texts: &[&str], role: TextRole) -> Result<Vec<Vec<f32>>> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EncodeError::InvalidInput(format!("text #{i} is empty")));
        }
        let owned;
        let texts: Vec<&str> = if self.prefix(role).is_empty() {
            texts.to_vec()
        } else {
            owned = self.prefixed(texts, role);
            owned.iter().map(String::as_str).collect()
        };
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(MAX_RUN_BATCH) {
            out.extend(self.embed_chunk(chunk)?);
        }
        Ok(out)
    }

    fn embed_chunk(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let enc = self.tokenize(texts)?;
        let b = enc.len();
        let t = self
            .fixed_len
            .unwrap_or_else(|| enc.iter().map(|e| e.len()).max().unwrap_or(0));
        if b == 0 {
            return Ok(Vec::new());
        }
        let mut feeds: Vec<(String, Tensor<i64>)> = Vec::with_capacity(self.inputs.len());
        for name in &self.inputs {
            let mut data = Vec::with_capacity(b * t);
            for e in &enc {
                let src: &[u32] = match name.as_str() {
                    "attention_mask" => e.get_attention_mask(),
                    "token_type_ids" => e.get_type_ids(),
                    _ => e.get_ids(),
                };
                if src.len() != t {
                    return Err(EncodeError::Runtime(format!(
                        "tokenizer returned {} ids, expected {t}",
                        src.len()
                    )));
                }
                data.extend(src.iter().map(|&x| i64::from(x)));
            }
            let tensor = Tensor::from_array(([b, t], data))
                .map_err(|e| EncodeError::runtime("input tensor", e))?;
            feeds.push((name.clone(), tensor));
        }
        let flat = self.pool.with(|s| -> Result<Vec<f32>> {
            let outputs = s
                .run(feeds)
                .map_err(|e| EncodeError::runtime("text model run", e))?;
            let v = outputs.get(&self.output).ok_or_else(|| {
                EncodeError::Runtime(format!("text model has no output {:?}", self.output))
            })?;
            let (shape, data) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| EncodeError::runtime("text output", e))?;
            if shape.len() != 2 || shape[0] as usize != b || shape[1] as usize != self.dim {
                return Err(EncodeError::Runtime(format!(
                    "text output shape {shape:?}, expected [{b}, {}]",
                    self.dim
                )));
            }
            Ok(data.to_vec())
        })?;
        Ok(flat
            .chunks_exact(self.dim)
            .map(|row| normalized(row.to_vec()))
            .collect())
    }
}
