//! Deterministic clustered unit vectors for scale and load measurements (mmsearch-tools) and
//! the server's process-level tests: `clusters` gaussian blobs on the sphere, so an HNSW graph
//! over them has the neighbourhood structure of real embeddings (uniform random vectors in
//! 384-d have none: every point is almost equally far).
//!
//! Row `i` depends only on `(seed, i)`, so any process can regenerate any row or a query near
//! it without sharing files, and parallel writers produce the same catalogue.

pub struct Clustered {
    pub centres: Vec<Vec<f32>>,
    state: u64,
    pub dim: usize,
    seed: u64,
}

impl Clustered {
    pub fn new(dim: usize, clusters: usize, seed: u64) -> Clustered {
        let mut c = Clustered {
            centres: Vec::new(),
            state: seed.max(1),
            dim,
            seed,
        };
        for _ in 0..clusters.max(1) {
            let v: Vec<f32> = (0..dim).map(|_| c.gauss()).collect();
            c.centres.push(normalise(v));
        }
        c
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*: deterministic and dependency-free.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545F4914F6CDD1D)
    }

    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn gauss(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }

    /// The next point of blob `cluster`, from the running generator state.
    pub fn sample(&mut self, cluster: usize, spread: f32) -> Vec<f32> {
        let c = self.centres[cluster % self.centres.len()].clone();
        let v: Vec<f32> = c.iter().map(|x| x + spread * self.gauss()).collect();
        normalise(v)
    }

    /// Row `row` of the catalogue: blob `row % clusters`, noise seeded by `(seed, row)` only.
    /// `salt` gives an independent point near the same blob (queries use salt 1, items 0).
    pub fn row(&mut self, row: u64, salt: u64, spread: f32) -> Vec<f32> {
        self.state =
            splitmix64(self.seed ^ splitmix64(row.wrapping_mul(2).wrapping_add(salt))).max(1);
        self.sample((row % self.centres.len() as u64) as usize, spread)
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

pub fn normalise(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_depend_only_on_seed_and_index() {
        let mut a = Clustered::new(16, 4, 7);
        let mut b = Clustered::new(16, 4, 7);
        let late = a.row(1000, 0, 0.1);
        let _ = b.row(3, 0, 0.1);
        assert_eq!(b.row(1000, 0, 0.1), late);
        assert_ne!(a.row(1000, 1, 0.1), late, "the salt gives another point");
        let n: f32 = late.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }

    #[test]
    fn rows_lie_near_their_blob() {
        let mut c = Clustered::new(64, 8, 3);
        let v = c.row(13, 0, 0.05);
        let own: f32 = v.iter().zip(&c.centres[13 % 8]).map(|(a, b)| a * b).sum();
        let other: f32 = v.iter().zip(&c.centres[2]).map(|(a, b)| a * b).sum();
        assert!(own > 0.7 && own > other + 0.3, "own {own} other {other}");
    }
}
