//! Distance kernels for the flat graph, chosen once per process from the CPU's features.
//!
//! Graph distances are "lower is better": squared Euclidean distance for L2 (no `sqrt` in
//! the hot loop; ordering is the same) and `1 - <a,b>` for cosine over unit vectors. The
//! search converts to this crate's "higher is better" score only for the final hits.
//!
//! Three implementations: AVX-512F (16 lanes, four accumulators), AVX2+FMA (8 lanes, four
//! accumulators: the add latency, not the load bandwidth, bounds a one-accumulator loop) and
//! a portable eight-accumulator loop the compiler vectorises for the baseline target.
//! [`Kernel::detect`] picks the widest the CPU supports; [`Kernel::portable`] forces the
//! fallback (tests compare all three on the same inputs).

use crate::metric::Metric;

/// Which instruction set a [`Kernel`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2Fma,
    Avx512,
}

type DistFn = fn(&[f32], &[f32]) -> f32;

/// A metric's graph distance bound to one instruction set.
#[derive(Clone, Copy)]
pub struct Kernel {
    pub metric: Metric,
    pub isa: Isa,
    dist: DistFn,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("metric", &self.metric)
            .field("isa", &self.isa)
            .finish()
    }
}

impl Kernel {
    /// The widest kernel this CPU runs (detected once, cached).
    pub fn detect(metric: Metric) -> Kernel {
        Kernel::with_isa(metric, best_isa()).unwrap_or_else(|| Kernel::portable(metric))
    }

    pub fn portable(metric: Metric) -> Kernel {
        let dist: DistFn = match metric {
            Metric::L2 => portable_l2,
            Metric::Cosine => portable_cos,
        };
        Kernel {
            metric,
            isa: Isa::Portable,
            dist,
        }
    }

    /// The kernel for `isa`, or `None` when this CPU lacks it.
    pub fn with_isa(metric: Metric, isa: Isa) -> Option<Kernel> {
        let dist: DistFn = match (isa, metric) {
            (Isa::Portable, _) => return Some(Kernel::portable(metric)),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2Fma, Metric::L2) if has_avx2_fma() => x86::avx2_l2,
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2Fma, Metric::Cosine) if has_avx2_fma() => x86::avx2_cos,
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Metric::L2) if has_avx512() => x86::avx512_l2,
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, Metric::Cosine) if has_avx512() => x86::avx512_cos,
            _ => return None,
        };
        Some(Kernel { metric, isa, dist })
    }

    /// Graph distance of two prepared vectors of equal length (lower is nearer).
    #[inline(always)]
    pub fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.dist)(a, b)
    }

    /// This crate's score ("higher is better", as [`Metric::score`]) from a graph distance.
    #[inline]
    pub fn score(&self, distance: f32) -> f32 {
        match self.metric {
            Metric::L2 => -distance.max(0.0).sqrt(),
            Metric::Cosine => 1.0 - distance,
        }
    }
}

/// The widest instruction set the CPU supports, detected once.
pub fn best_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            return Isa::Avx512;
        }
        if has_avx2_fma() {
            return Isa::Avx2Fma;
        }
    }
    Isa::Portable
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static YES: OnceLock<bool> = OnceLock::new();
    *YES.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static YES: OnceLock<bool> = OnceLock::new();
    *YES.get_or_init(|| is_x86_feature_detected!("avx512f") && has_avx2_fma())
}

fn portable_l2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    crate::metric::l2_squared(&a[..n], &b[..n])
}

fn portable_cos(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    1.0 - crate::metric::dot(&a[..n], &b[..n])
}

/// Prefetches the cache lines of `bytes` bytes from `p` into L1 (a hint; never faults).
#[inline(always)]
pub fn prefetch(p: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut off = 0;
        while off < bytes {
            // SAFETY: prefetch is a hint that never dereferences; any address is allowed.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off) as *const i8) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (p, bytes);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub fn avx2_l2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        // SAFETY: only handed out by Kernel::with_isa after the AVX2+FMA check; both slices
        // hold at least n floats.
        unsafe { l2_avx2(a.as_ptr(), b.as_ptr(), n) }
    }

    pub fn avx2_cos(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        // SAFETY: as avx2_l2.
        1.0 - unsafe { dot_avx2(a.as_ptr(), b.as_ptr(), n) }
    }

    pub fn avx512_l2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        // SAFETY: only handed out after the AVX-512F check; both slices hold n floats.
        unsafe { l2_avx512(a.as_ptr(), b.as_ptr(), n) }
    }

    pub fn avx512_cos(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        // SAFETY: as avx512_l2.
        1.0 - unsafe { dot_avx512(a.as_ptr(), b.as_ptr(), n) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2_avx2(pa: *const f32, pb: *const f32, n: usize) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                );
                *a = _mm256_fmadd_ps(d, d, *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
            i += 8;
        }
        let mut s = hsum256(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            let d = *pa.add(i) - *pb.add(i);
            s += d * d;
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_avx2(pa: *const f32, pb: *const f32, n: usize) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                    *a,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let mut s = hsum256(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            s += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn l2_avx512(pa: *const f32, pb: *const f32, n: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                let d = _mm512_sub_ps(
                    _mm512_loadu_ps(pa.add(i + 16 * j)),
                    _mm512_loadu_ps(pb.add(i + 16 * j)),
                );
                *a = _mm512_fmadd_ps(d, d, *a);
            }
            i += 64;
        }
        while i + 16 <= n {
            let d = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            acc[0] = _mm512_fmadd_ps(d, d, acc[0]);
            i += 16;
        }
        if i < n {
            // Masked tail: lanes past n load as zero in both, so they add nothing.
            let m: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            let d = _mm512_sub_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
            );
            acc[1] = _mm512_fmadd_ps(d, d, acc[1]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_avx512(pa: *const f32, pb: *const f32, n: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16 * j)),
                    _mm512_loadu_ps(pb.add(i + 16 * j)),
                    *a,
                );
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i)),
                _mm512_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 16;
        }
        if i < n {
            let m: __mmask16 = (1u32 << (n - i)) as u16 - 1;
            acc[1] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc[1],
            );
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: usize) -> (Vec<f32>, Vec<f32>) {
        let a = (0..n)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let b = (0..n)
            .map(|i| ((i * 104729) % 89) as f32 / 89.0 - 0.5)
            .collect();
        (a, b)
    }

    #[test]
    fn every_available_isa_matches_f64_sums() {
        for isa in [Isa::Portable, Isa::Avx2Fma, Isa::Avx512] {
            for n in [
                1usize, 7, 8, 9, 15, 16, 17, 31, 32, 33, 50, 63, 64, 65, 100, 384, 784,
            ] {
                let (a, b) = pair(n);
                let l2: f64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum();
                let ip: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
                let Some(kl) = Kernel::with_isa(Metric::L2, isa) else {
                    continue;
                };
                let kc = Kernel::with_isa(Metric::Cosine, isa).unwrap();
                assert_eq!(kl.isa, isa);
                assert!(
                    (kl.distance(&a, &b) as f64 - l2).abs() < 1e-4 * (1.0 + l2),
                    "{isa:?} l2 n={n}"
                );
                assert!(
                    (kc.distance(&a, &b) as f64 - (1.0 - ip)).abs() < 1e-4 * (1.0 + ip.abs()),
                    "{isa:?} cos n={n}"
                );
                assert_eq!(kl.distance(&a, &a), 0.0);
            }
        }
    }

    #[test]
    fn forced_portable_fallback_is_used_and_correct() {
        let k = Kernel::portable(Metric::L2);
        assert_eq!(k.isa, Isa::Portable);
        assert_eq!(k.distance(&[0.0, 3.0], &[4.0, 0.0]), 25.0);
        assert_eq!(k.score(25.0), -5.0);
        let c = Kernel::portable(Metric::Cosine);
        assert_eq!(c.distance(&[1.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(c.score(0.25), 0.75);
        // Detection picks something this CPU runs, and it agrees with the fallback.
        let best = Kernel::detect(Metric::L2);
        let (a, b) = pair(100);
        assert!((best.distance(&a, &b) - k.distance(&a, &b)).abs() < 1e-3);
    }
}
