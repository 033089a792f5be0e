//! ConSE bridge: image-classifier logits → a vector in the text tower's space.
//!
//! `p = softmax(logits / T)`, keep the `top_k` largest probabilities (others 0, not renormalised —
//! the final L2 normalisation makes that moot), `v = Σ p_c·E[c]`, `v /= ‖v‖`, where `E` holds one
//! unit text embedding per class ("a photo of a {name}" averaged over synonyms). Softmax is
//! computed in f64 so the top-k selection and weights match numpy bit-for-bit on ties and tiny
//! probabilities.

use serde::{Deserialize, Serialize};

use super::error::{EncodeError, Result};
use mmsearch_index::metric::normalize;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BridgeConfig {
    /// Classes kept per image; `None` → the manifest's value (20 for effnet-lite0).
    pub top_k: Option<usize>,
    /// Softmax temperature; `None` → the manifest's value (2.0).
    pub temperature: Option<f32>,
}

#[derive(Debug, Clone)]
pub struct Bridge {
    /// Row-major [classes, dim].
    class_emb: Vec<f32>,
    classes: usize,
    dim: usize,
    top_k: usize,
    temperature: f32,
}

impl Bridge {
    pub fn new(
        class_emb: Vec<f32>,
        classes: usize,
        dim: usize,
        top_k: usize,
        temperature: f32,
    ) -> Result<Self> {
        if class_emb.len() != classes * dim || classes == 0 || dim == 0 {
            return Err(EncodeError::Config(format!(
                "class prompt matrix has {} floats, expected {classes}×{dim}",
                class_emb.len()
            )));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(EncodeError::Config(format!(
                "bridge temperature must be > 0, got {temperature}"
            )));
        }
        Ok(Self {
            class_emb,
            classes,
            dim,
            top_k: top_k.clamp(1, classes),
            temperature,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn top_k(&self) -> usize {
        self.top_k
    }

    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// Unit vector in text space for one image's logits.
    pub fn project(&self, logits: &[f32]) -> Result<Vec<f32>> {
        if logits.len() != self.classes {
            return Err(EncodeError::Runtime(format!(
                "bridge got {} logits, expected {}",
                logits.len(),
                self.classes
            )));
        }
        let t = f64::from(self.temperature);
        let max = logits
            .iter()
            .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x) / t));
        let mut p: Vec<f64> = logits
            .iter()
            .map(|&x| (f64::from(x) / t - max).exp())
            .collect();
        let sum: f64 = p.iter().sum();
        p.iter_mut().for_each(|x| *x /= sum);
        // stable sort by descending probability; ties resolved by class index
        let mut idx: Vec<usize> = (0..self.classes).collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        let mut v = vec![0f64; self.dim];
        for &c in &idx[..self.top_k] {
            let row = &self.class_emb[c * self.dim..(c + 1) * self.dim];
            for (a, &e) in v.iter_mut().zip(row) {
                *a += p[c] * f64::from(e);
            }
        }
        let mut out: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
        if !normalize(&mut out) {
            return Err(EncodeError::Runtime("bridge produced a zero vector".into()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top1_picks_row() {
        // 3 classes, 2 dims
        let e = vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8];
        let b = Bridge::new(e, 3, 2, 1, 1.0).expect("bridge");
        let v = b.project(&[0.0, 5.0, 1.0]).expect("proj");
        assert!((v[0] - 0.0).abs() < 1e-6 && (v[1] - 1.0).abs() < 1e-6);
    }
}
