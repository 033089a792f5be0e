//! Export of an hnsw_rs graph into the flat graph file ([`crate::graph_file`]).
//!
//! hnsw_rs keeps each point in the layer of its own level, with one neighbour list per layer
//! for all 16 layers. Two traps, both handled here:
//! - lists above a point's own level hold "projection" entries left by the insert: they are
//!   not links of that layer and are skipped;
//! - an upper-layer list can name a point whose level is below that layer: such entries are
//!   dropped (they would route the descent into a node with no list on that layer).
//!
//! hnsw_rs's entry point is private; any node of the top layer serves (the descent is greedy
//! from there, and all top-layer nodes are linked together).

use crate::error::{IndexError, Result};
use crate::graph::{HnswGraph, HnswParams};
use crate::graph_file::{self, Builder, GraphSource, MAX_LEVELS};
use std::path::Path;

/// Links of every node, per level, in node numbering.
pub struct ExportedLinks {
    pub levels: Vec<u8>,
    pub entry: u32,
    /// `lists[node][level]` for level 0..=levels[node].
    pub lists: Vec<Vec<Vec<u32>>>,
}

/// Reads `graph`'s links into node numbering: node i is `ids[i]` (ascending). Every id of the
/// graph must be in `ids` and vice versa.
pub fn links(graph: &HnswGraph, ids: &[u64], params: &HnswParams) -> Result<ExportedLinks> {
    let n = ids.len();
    let node_of = |id: usize| ids.binary_search(&(id as u64)).ok().map(|i| i as u32);
    let ix = graph.indexation();
    let top = (ix.get_max_level_observed() as usize).min(MAX_LEVELS - 1);
    let mut levels = vec![u8::MAX; n];
    let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    let mut entry = None;
    let (m, m0) = (params.m, 2 * params.m);
    for layer in 0..=top {
        for point in ix.get_layer_iterator(layer) {
            let Some(node) = node_of(point.get_origin_id()) else {
                return Err(IndexError::Hnsw(format!(
                    "graph holds id {} the rows do not",
                    point.get_origin_id()
                )));
            };
            let level = point.get_point_id().0 as usize;
            if level != layer || levels[node as usize] != u8::MAX {
                return Err(IndexError::Hnsw(format!(
                    "id {} listed twice or on the wrong layer",
                    point.get_origin_id()
                )));
            }
            levels[node as usize] = level as u8;
            if level == top && entry.is_none() {
                entry = Some(node);
            }
            let hood = point.get_neighborhood_id();
            let mut per_level = Vec::with_capacity(level + 1);
            for (l, list) in hood.iter().enumerate().take(level + 1) {
                let cap = if l == 0 { m0 } else { m };
                let mut out: Vec<u32> = Vec::with_capacity(list.len().min(cap));
                for nb in list {
                    if (nb.p_id.0 as usize) < l {
                        continue;
                    }
                    let Some(nb_node) = node_of(nb.d_id) else {
                        continue;
                    };
                    if nb_node != node && !out.contains(&nb_node) && out.len() < cap {
                        out.push(nb_node);
                    }
                }
                per_level.push(out);
            }
            lists[node as usize] = per_level;
        }
    }
    if let Some(missing) = levels.iter().position(|&l| l == u8::MAX) {
        return Err(IndexError::Hnsw(format!(
            "id {} of the rows is not in the graph",
            ids[missing]
        )));
    }
    let entry = entry.ok_or_else(|| IndexError::Hnsw("graph has no top layer".into()))?;
    Ok(ExportedLinks {
        levels,
        entry,
        lists,
    })
}

/// Writes `graph` with its rows as a graph file. `rows` are the prepared vectors the graph
/// was built from, sorted by id.
pub fn write(
    path: &Path,
    graph: &HnswGraph,
    params: &HnswParams,
    dim: usize,
    rows: &[(u64, &[f32])],
) -> Result<u64> {
    let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
    let ex = links(graph, &ids, params)?;
    let vector = |i: usize| rows[i].1;
    let neighbours = |node: u32, level: usize, out: &mut Vec<u32>| {
        if let Some(l) = ex.lists[node as usize].get(level) {
            out.extend_from_slice(l);
        }
    };
    graph_file::write(
        path,
        &GraphSource {
            metric: graph.metric(),
            dim,
            m: params.m,
            m0: 2 * params.m,
            ef_construction: params.ef_construction,
            builder: Builder::HnswRs,
            ids: &ids,
            vector: &vector,
            levels: &ex.levels,
            entry: ex.entry,
            neighbours: &neighbours,
        },
    )
}
