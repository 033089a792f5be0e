//! EASE (Steck 2019): B = I − P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, diag(B) = 0, from binary
//! user × item data X. A user's scores are x_u·B; only each row's strongest entries are kept.

/// A symmetric positive definite matrix inverted in place (row-major n×n), by Gauss–Jordan
/// elimination without pivoting: safe for XᵀX + λI, whose diagonal dominates (λ > 0).
pub fn invert_spd(a: &mut [f64], n: usize, mut progress: impl FnMut(usize)) {
    let mut row_k = vec![0f64; n];
    for k in 0..n {
        let inv = 1.0 / a[k * n + k];
        a[k * n + k] = 1.0;
        for x in &mut a[k * n..(k + 1) * n] {
            *x *= inv;
        }
        row_k.copy_from_slice(&a[k * n..(k + 1) * n]);
        for i in 0..n {
            if i == k {
                continue;
            }
            let row = &mut a[i * n..(i + 1) * n];
            let f = row[k];
            if f == 0.0 {
                continue;
            }
            row[k] = 0.0;
            for (x, r) in row.iter_mut().zip(&row_k) {
                *x -= f * r;
            }
        }
        if k % 64 == 0 {
            progress(k);
        }
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
    invert_spd(&mut g, n, progress);
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
        let n = 5;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] =
                    1.0 / (1.0 + (i as f64 - j as f64).abs()) + if i == j { 3.0 } else { 0.0 };
            }
        }
        let orig = a.clone();
        invert_spd(&mut a, n, |_| {});
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
        let nb = train(&users, 5, 1.0, 2, |_| {});
        assert_eq!(nb[0][0].0, 1);
        assert_eq!(nb[2][0].0, 3);
        assert!(nb[0][1].1 < nb[0][0].1, "{:?}", nb[0]);
    }
}
