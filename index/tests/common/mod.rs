//! Shared by the index's integration tests.

use mmsearch_index::Metric;

/// `n` random unit vectors of `dim` (xorshift from `seed`, components in [-1, 1)), with the ids
/// `id(i)` chooses.
pub fn random_rows(
    n: usize,
    dim: usize,
    seed: u64,
    id: impl Fn(usize) -> u64,
) -> Vec<(u64, Vec<f32>)> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 10_000) as f32 / 5_000.0 - 1.0
    };
    (0..n)
        .map(|i| {
            let v: Vec<f32> = (0..dim).map(|_| next()).collect();
            (
                id(i),
                Metric::Cosine
                    .prepare(dim, &v)
                    .expect("random vectors are not zero"),
            )
        })
        .collect()
}
