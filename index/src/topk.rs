//! Bounded top-k selection by score (higher is better), ties broken by the smaller id so
//! results are deterministic across layers and restarts.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub id: u64,
    pub score: f32,
}

impl Scored {
    /// Total order: better first (higher score, then lower id).
    pub fn better_first(a: &Scored, b: &Scored) -> Ordering {
        b.score.total_cmp(&a.score).then(a.id.cmp(&b.id))
    }
}

/// Heap entry whose maximum is the *worst* kept hit, so it can be evicted in O(log k).
struct Worst(Scored);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        Scored::better_first(&self.0, &other.0)
    }
}

pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    pub fn push(&mut self, id: u64, score: f32) {
        if self.k == 0 {
            return;
        }
        let s = Scored { id, score };
        if self.heap.len() < self.k {
            self.heap.push(Worst(s));
        } else if let Some(worst) = self.heap.peek() {
            if Scored::better_first(&s, &worst.0) == Ordering::Less {
                self.heap.pop();
                self.heap.push(Worst(s));
            }
        }
    }

    pub fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(Scored::better_first);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_best_k_in_order() {
        let mut t = TopK::new(3);
        for (id, s) in [(1, 0.1), (2, 0.9), (3, 0.5), (4, 0.7), (5, 0.9)] {
            t.push(id, s);
        }
        let ids: Vec<u64> = t.into_sorted().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![2, 5, 4]);
    }
}
