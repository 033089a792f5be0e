//! Metrics and the exact distance kernels shared by the flat layer and exact scans.
//!
//! Every score leaving this crate is "higher is better": cosine similarity for
//! `Cosine`, negative Euclidean distance for `L2`. Cosine vectors are L2-normalised on the
//! way in so the graph can use a plain dot product (hnsw_rs `DistDot`), which has a SIMD path
//! where `DistCosine` recomputes norms on every comparison.

use crate::error::{IndexError, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Cosine,
    L2,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "angular" => Some(Metric::Cosine),
            "l2" | "euclidean" => Some(Metric::L2),
            _ => None,
        }
    }

    /// Validates a vector and brings it into the form the index stores (unit length for cosine).
    pub fn prepare(self, dim: usize, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != dim {
            return Err(IndexError::Dimension {
                expected: dim,
                got: v.len(),
            });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(IndexError::NonFinite);
        }
        match self {
            Metric::L2 => Ok(v.to_vec()),
            Metric::Cosine => {
                let mut out = v.to_vec();
                if normalize(&mut out) {
                    Ok(out)
                } else {
                    Err(IndexError::ZeroVector)
                }
            }
        }
    }

    /// Exact score of two prepared vectors.
    #[inline]
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => dot(a, b),
            Metric::L2 => -l2_squared(a, b).sqrt(),
        }
    }

    /// Converts an hnsw_rs distance into this crate's score.
    #[inline]
    pub(crate) fn score_from_graph_distance(self, d: f32) -> f32 {
        match self {
            // DistDot returns 1 - <a,b> for unit vectors.
            Metric::Cosine => 1.0 - d,
            Metric::L2 => -d,
        }
    }
}

/// Scales `v` to unit length in place — the one normalisation of the project (query and item
/// vectors, fusion, encoder outputs). Returns `false`, leaving `v` as it was, for a zero or
/// non-finite vector, so the caller decides whether that is an error.
pub fn normalize(v: &mut [f32]) -> bool {
    if v.iter().any(|x| !x.is_finite()) {
        return false;
    }
    let squares = dot(v, v);
    if squares.is_finite() && squares >= f32::MIN_POSITIVE {
        let inv = 1.0 / squares.sqrt();
        v.iter_mut().for_each(|x| *x *= inv);
        return true;
    }
    // The f32 sum of squares overflowed (components beyond ~1e19: the vector would become all
    // zeros) or fell into the subnormal range, where it keeps a few bits at best (the
    // request_validate fuzz target got a "unit" vector of norm 0.707). Redo it in f64, where
    // every finite f32 vector has an exact enough, non-zero norm unless it is all zeros.
    let norm = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return false;
    }
    v.iter_mut()
        .for_each(|x| *x = (f64::from(*x) / norm) as f32);
    true
}

/// [`normalize`] of an owned vector; a zero or non-finite vector comes back unchanged.
pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    normalize(&mut v);
    v
}

/// Dot product with 8 independent accumulators so the compiler emits packed FMAs/adds
/// without needing `-ffast-math` style reassociation.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        let (x, y) = (&a[i * 8..i * 8 + 8], &b[i * 8..i * 8 + 8]);
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0.0;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    acc.iter().sum::<f32>() + tail
}

#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        let (x, y) = (&a[i * 8..i * 8 + 8], &b[i * 8..i * 8 + 8]);
        for j in 0..8 {
            let d = x[j] - y[j];
            acc[j] += d * d;
        }
    }
    let mut tail = 0.0;
    for i in chunks * 8..a.len() {
        let d = a[i] - b[i];
        tail += d * d;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_prepare_normalises_and_rejects_bad_vectors() {
        let v = Metric::Cosine.prepare(3, &[3.0, 0.0, 4.0]).unwrap();
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        assert!(matches!(
            Metric::Cosine.prepare(3, &[0.0; 3]),
            Err(IndexError::ZeroVector)
        ));
        assert!(matches!(
            Metric::Cosine.prepare(2, &[1.0; 3]),
            Err(IndexError::Dimension { .. })
        ));
        assert!(matches!(
            Metric::L2.prepare(2, &[1.0, f32::NAN]),
            Err(IndexError::NonFinite)
        ));
    }

    #[test]
    fn cosine_prepare_survives_huge_and_tiny_components() {
        // |x|² overflows f32 past ~1.8e19: the f32 norm is inf and x/inf used to give all zeros
        // fuzz/regressions/request_validate/cosine-subnormal-norm: its f32 sum of squares is
        // subnormal, and it used to come out with norm 0.707
        let fuzz = [
            f32::from_bits(0x0006_0000),
            0.0,
            f32::from_bits(0x1a00_0000),
            f32::from_bits(0x0000_2200),
        ];
        let p = Metric::Cosine.prepare(4, &fuzz).unwrap();
        assert!(
            (p.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt() - 1.0).abs() < 1e-6,
            "{p:?}"
        );
        for v in [
            [3e30f32, 0.0, -4e30],
            [f32::MAX, f32::MAX, 1.0],
            [3e-40, 0.0, 4e-40],
            [1e-20, 0.0, 2e-21],
        ] {
            let p = Metric::Cosine.prepare(3, &v).unwrap();
            let n: f64 = p
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            assert!((n - 1.0).abs() < 1e-6, "{v:?} -> {p:?}");
        }
        let p = Metric::Cosine.prepare(3, &[3e30, 0.0, -4e30]).unwrap();
        assert!(
            (p[0] - 0.6).abs() < 1e-6 && (p[2] + 0.8).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn kernels_match_naive_sums_on_odd_lengths() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.25).collect();
        let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((dot(&a, &b) - naive_dot).abs() < 1e-3);
        assert!((l2_squared(&a, &b) - naive_l2).abs() < 1e-3);
    }
}
