//! EASE (Steck 2019): B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, diag(B) = 0, from binary
//! user × item data X. A user's scores are x_u·B; only each row's strongest entries are kept.

use faer::{Accum, MatMut, MatRef, Par};

/// Pivots eliminated per pass over the matrix: the panel (BLOCK rows) stays in cache while
/// every other row is updated by it, so the n×n matrix is streamed n/BLOCK times instead of n.
const BLOCK: usize = 64;

/// A symmetric positive definite matrix inverted in place (row-major n×n), by blocked
/// Gauss–Jordan elimination without pivoting (safe for XᵀX + λI, whose diagonal dominates,
/// λ > 0). Each block of pivots is first eliminated within its own rows (the panel); then
/// every other row i takes `row_i −= A[i][K] · panel` with A[i][K] zeroed first, which is
/// exactly what the pivots one at a time would have done to it. Those row updates are almost
/// all of the n³ work: one matrix product per side of the panel, done by faer's GEMM (SIMD
/// kernels chosen at run time, on `threads` threads). In place, so memory stays n² plus the
/// panel, where a Cholesky inverse would hold the factor and its inverse beside the matrix
/// (3n²). `progress(k)` after each block.
pub fn invert_spd(a: &mut [f64], n: usize, threads: usize, mut progress: impl FnMut(usize)) {
    let par = if threads > 1 {
        Par::rayon(threads)
    } else {
        Par::Seq
    };
    let mut panel = vec![0f64; BLOCK * n];
    let mut factors = vec![0f64; n * BLOCK];
    for k0 in (0..n).step_by(BLOCK) {
        let b = BLOCK.min(n - k0);
        let panel = &mut panel[..b * n];
        panel.copy_from_slice(&a[k0 * n..(k0 + b) * n]);
        for t in 0..b {
            let k = k0 + t;
            let inv = 1.0 / panel[t * n + k];
            panel[t * n + k] = 1.0;
            for x in &mut panel[t * n..(t + 1) * n] {
                *x *= inv;
            }
            let (before, rest) = panel.split_at_mut(t * n);
            let (pivot, after) = rest.split_at_mut(n);
            for row in before.chunks_mut(n).chain(after.chunks_mut(n)) {
                let f = row[k];
                if f != 0.0 {
                    row[k] = 0.0;
                    for (x, p) in row.iter_mut().zip(pivot.iter()) {
                        *x -= f * *p;
                    }
                }
            }
        }
        let (above, rest) = a.split_at_mut(k0 * n);
        let below = &mut rest[b * n..];
        for rows in [above, below] {
            let m = rows.len() / n;
            if m == 0 {
                continue;
            }
            let f = &mut factors[..m * b];
            for (row, fr) in rows.chunks_mut(n).zip(f.chunks_mut(b)) {
                fr.copy_from_slice(&row[k0..k0 + b]);
                row[k0..k0 + b].fill(0.0);
            }
            faer::linalg::matmul::matmul(
                MatMut::from_row_major_slice_mut(rows, m, n),
                Accum::Add,
                MatRef::from_row_major_slice(f, m, b),
                MatRef::from_row_major_slice(panel, b, n),
                -1.0,
                par,
            );
        }
        a[k0 * n..(k0 + b) * n].copy_from_slice(panel);
        progress(k0 + b);
    }
}

/// Trains EASE over `n` items from each user's item list (indices < n, deduplicated) and
/// returns, per item h, its `keep` largest B[h][j] (all n − 1 of them when `keep` ≥ n − 1: then
/// scores are exactly EASE's, negative weights included).
pub fn train(
    users: &[Vec<u32>],
    n: usize,
    lambda: f32,
    keep: usize,
    threads: usize,
    progress: impl FnMut(usize),
) -> Vec<Vec<(u32, f32)>> {
    let mut g = vec![0f64; n * n];
    for items in users {
        for &i in items {
            let row = &mut g[i as usize * n..(i as usize + 1) * n];
            for &j in items {
                row[j as usize] += 1.0;
            }
        }
    }
    for i in 0..n {
        g[i * n + i] += lambda as f64;
    }
    invert_spd(&mut g, n, threads, progress);
    let p = g;
    (0..n)
        .map(|h| {
            let mut row: Vec<(u32, f32)> = (0..n)
                .filter(|&j| j != h)
                .map(|j| (j as u32, (-p[h * n + j] / p[j * n + j]) as f32))
                .collect();
            super::knn::keep_top(&mut row, keep);
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        // Three blocks, the last one partial.
        let n = 2 * BLOCK + 22;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    1.0 / (1.0 + (i as f64 - j as f64).abs()) + if i == j { 10.0 } else { 0.0 };
            }
        }
        let orig = a.clone();
        invert_spd(&mut a, n, 3, |_| {});
        for i in 0..n {
            for j in 0..n {
                let x: f64 = (0..n).map(|k| orig[i * n + k] * a[k * n + j]).sum();
                assert!(
                    (x - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9,
                    "{i},{j}: {x}"
                );
            }
        }
    }

    #[test]
    fn items_bought_together_become_neighbours() {
        // Items 0 and 1 always together; 2 and 3 together; 4 alone.
        let users: Vec<Vec<u32>> = (0..20)
            .map(|u| {
                if u % 2 == 0 {
                    vec![0, 1]
                } else {
                    vec![2, 3, 4 * (u % 3 == 0) as u32]
                }
            })
            .collect();
        let users: Vec<Vec<u32>> = users
            .into_iter()
            .map(|mut v| {
                v.sort();
                v.dedup();
                v
            })
            .collect();
        let nb = train(&users, 5, 1.0, 2, 2, |_| {});
        assert_eq!(nb[0][0].0, 1);
        assert_eq!(nb[2][0].0, 3);
        assert!(nb[0][1].1 < nb[0][0].1, "{:?}", nb[0]);
    }
}
