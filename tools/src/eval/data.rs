//! The evaluation data sets, as prepared by `deploy/eval/fetch_eval.py` under
//! `$MMSEARCH_EVAL_DATA` (default `~/.cache/mmsearch/eval`). Nothing here downloads: a missing
//! file is an error that names the script to run.

use super::EvalError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The hand-written query sets of the reference (`shared/eval/`), compiled in so the binary and
/// the test need no path to the source tree.
const PARAPHRASES: &str = include_str!("../../../benches/eval/queries/vendure_paraphrases.json");
const VOICE_QUERIES: &str = include_str!("../../../benches/eval/queries/voice_queries.json");
/// Chinese shopper queries for the Vendure products (everyday phrasing, not title translations),
/// and Chinese titles and descriptions for the same 54 products (a second catalogue).
const ZH_QUERIES: &str = include_str!("../../../benches/eval/queries/vendure_zh_queries.json");
const ZH_CATALOG: &str = include_str!("../../../deploy/eval/vendure_zh.jsonl");

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

#[derive(Debug, Clone)]
pub struct DataDir(pub PathBuf);

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub price: f64,
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stamp {
    /// Path under `stamps/` without extension, e.g. `clothes/hats/tophat`: the item id.
    pub key: String,
    pub caption: String,
    /// Folder, e.g. `clothes/hats`: the image→image relevance label.
    pub category: String,
    /// Top folder, e.g. `clothes`.
    pub top: String,
    pub image: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SpokenQuery {
    /// `voice_queries` or `vendure_paraphrases`.
    pub set: String,
    /// Vendure product id the query is about.
    pub target: String,
    pub text: String,
    pub wav: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Recording {
    pub name: String,
    /// What the speaker says (the sound name without its scene prefix).
    pub word: String,
    pub wav: PathBuf,
}

/// (product id, query text) pairs.
pub type QuerySet = Vec<(String, String)>;

pub fn paraphrases() -> Result<QuerySet, EvalError> {
    serde_json::from_str(PARAPHRASES)
        .map_err(|e| EvalError::Data(format!("vendure_paraphrases.json: {e}")))
}

pub fn zh_queries() -> Result<QuerySet, EvalError> {
    serde_json::from_str(ZH_QUERIES)
        .map_err(|e| EvalError::Data(format!("vendure_zh_queries.json: {e}")))
}

/// One product of the Chinese catalogue: the Vendure id with a Chinese title and description.
#[derive(Debug, Clone, Deserialize)]
pub struct ZhText {
    pub id: String,
    pub title: String,
    pub description: String,
}

pub fn zh_catalog() -> Result<Vec<ZhText>, EvalError> {
    ZH_CATALOG
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| EvalError::Data(format!("vendure_zh.jsonl:{}: {e}", i + 1)))
        })
        .collect()
}

pub fn voice_queries() -> Result<QuerySet, EvalError> {
    serde_json::from_str(VOICE_QUERIES)
        .map_err(|e| EvalError::Data(format!("voice_queries.json: {e}")))
}

impl DataDir {
    /// `$MMSEARCH_EVAL_DATA`, else `~/.cache/mmsearch/eval`; fails unless the fetch script finished.
    pub fn locate(explicit: Option<&Path>) -> Result<DataDir, EvalError> {
        let root = match explicit {
            Some(p) => p.to_path_buf(),
            None => match std::env::var_os("MMSEARCH_EVAL_DATA") {
                Some(p) => PathBuf::from(p),
                None => {
                    let home = std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from("."));
                    home.join(".cache/mmsearch/eval")
                }
            },
        };
        if !root.join("READY").is_file() {
            return Err(EvalError::Data(format!(
                "evaluation data not found in {} (no READY file): run `deploy/eval/fetch_eval.py` \
                 (or set MMSEARCH_EVAL_DATA to where it wrote them)",
                root.display()
            )));
        }
        Ok(DataDir(root))
    }

    fn jsonl<T: for<'de> Deserialize<'de>>(&self, rel: &str) -> Result<Vec<T>, EvalError> {
        let path = self.0.join(rel);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EvalError::Data(format!("{}: {e}", path.display())))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map_err(|e| EvalError::Data(format!("{}:{}: {e}", path.display(), i + 1)))
            })
            .collect()
    }

    pub fn vendure(&self) -> Result<Vec<Product>, EvalError> {
        self.jsonl("vendure/catalog.jsonl")
    }

    pub fn tuxpaint(&self) -> Result<Vec<Stamp>, EvalError> {
        self.jsonl("tuxpaint/stamps.jsonl")
    }

    pub fn spoken_queries(&self) -> Result<Vec<SpokenQuery>, EvalError> {
        self.jsonl("voice/espeak.jsonl")
    }

    /// espeak-ng renderings of the Chinese queries from their pinyin (set `vendure_zh`).
    pub fn spoken_queries_zh(&self) -> Result<Vec<SpokenQuery>, EvalError> {
        self.jsonl("voice_zh/pinyin.jsonl")
    }

    pub fn ktuberling(&self) -> Result<Vec<Recording>, EvalError> {
        self.jsonl("voice/ktuberling.jsonl")
    }

    /// The first `n` Fashion-MNIST test images (28×28 grey, row-major) and their labels. The
    /// test split is ordered arbitrarily, so a prefix is a fair, fixed sample (the first 1000 hold
    /// 87–115 images per class; the first 500, 39–65).
    pub fn fashion_mnist(&self, n: usize) -> Result<(Vec<Vec<u8>>, Vec<u8>), EvalError> {
        let read = |name: &str| {
            let p = self.0.join("fashion-mnist").join(name);
            std::fs::read(&p).map_err(|e| EvalError::Data(format!("{}: {e}", p.display())))
        };
        let images = read("t10k-images-idx3-ubyte.idx")?;
        let labels = read("t10k-labels-idx1-ubyte.idx")?;
        // IDX: big-endian magic, counts, then the payload (16-byte header for images, 8 for labels).
        let be = |b: &[u8], at: usize| {
            u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
        };
        if images.len() < 16
            || labels.len() < 8
            || be(&images, 0) != 0x803
            || be(&labels, 0) != 0x801
        {
            return Err(EvalError::Data("fashion-mnist: not IDX files".into()));
        }
        let total = be(&images, 4).min(be(&labels, 4));
        let (rows, cols) = (be(&images, 8), be(&images, 12));
        if rows != 28 || cols != 28 || images.len() < 16 + total * 784 || labels.len() < 8 + total {
            return Err(EvalError::Data(
                "fashion-mnist: truncated or unexpected shape".into(),
            ));
        }
        let n = n.min(total);
        let x = (0..n)
            .map(|i| images[16 + i * 784..16 + (i + 1) * 784].to_vec())
            .collect();
        Ok((x, labels[8..8 + n].to_vec()))
    }
}

/// A 28×28 grey image as PNG bytes: the form a client would upload.
pub fn png_from_gray(pixels: &[u8], side: u32) -> Result<Vec<u8>, EvalError> {
    let img = image::GrayImage::from_raw(side, side, pixels.to_vec())
        .ok_or_else(|| EvalError::Data("grey image has the wrong size".into()))?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| EvalError::Data(format!("png: {e}")))?;
    Ok(out.into_inner())
}

pub fn read(path: &Path) -> Result<Vec<u8>, EvalError> {
    std::fs::read(path).map_err(|e| EvalError::Data(format!("{}: {e}", path.display())))
}
