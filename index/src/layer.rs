//! `Layer`: one searchable part of a space — the base generation's segment or the mutable
//! layer — seen through the three operations a plan needs.
//!
//! A query reads a space as a stack of layers ([`crate::SpaceView`]); keeping them behind one
//! trait lets the executor merge them without knowing which is a graph, which a flat table,
//! and lets a later graph (or more than one immutable segment) slot in underneath.

use crate::flat::FlatLayer;
use crate::generation::BaseSegment;
use crate::topk::Scored;

pub trait Layer {
    /// Up to k best hits among ids that pass `accept`, best first. `ef` is the beam width for
    /// layers that walk a graph (the planner guarantees ef ≥ k); exact layers ignore it.
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored>;

    /// The prepared vector stored under `id`, if this layer holds it.
    fn vector(&self, id: u64) -> Option<&[f32]>;

    /// Vectors held, tombstones included (a layer does not know what was deleted).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Layer for BaseSegment {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        BaseSegment::search(self, query, k, ef, accept)
    }

    fn vector(&self, id: u64) -> Option<&[f32]> {
        self.get(id)
    }

    fn len(&self) -> usize {
        BaseSegment::len(self)
    }
}

impl Layer for FlatLayer {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        _ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        FlatLayer::search(self, query, k, accept)
    }

    fn vector(&self, id: u64) -> Option<&[f32]> {
        self.get(id)
    }

    fn len(&self) -> usize {
        FlatLayer::len(self)
    }
}
