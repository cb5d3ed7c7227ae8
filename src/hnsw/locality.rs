//! Node renumbering for memory locality, as an experiment the benchmark measures
//! (`vectune-bench locality`): a breadth-first order from the entry point on layer 0 puts
//! a node's neighbours near it in memory (Coleman et al., NeurIPS 2022, report up to 40 %
//! lower query time with Gorder/RCM-like orders). The product keeps the index's own row
//! order unless this measurably lowers the search mean (see BENCHMARKS.md).

use std::collections::VecDeque;

use super::frozen::{FrozenGraph, NONE};
use super::Graph;
use crate::vectors::VectorSet;

/// Level of every node, read off the upper blocks (allocated in node order).
fn levels(g: &FrozenGraph) -> Vec<u8> {
    let mut out = vec![0u8; g.n];
    let mut next = g.upper.len();
    for node in (0..g.n).rev() {
        let s = g.upper_start[node];
        if s != NONE {
            out[node] = ((next - s as usize) / (1 + g.m)) as u8;
            next = s as usize;
        }
    }
    out
}

/// A breadth-first order of layer 0 from the entry point (nodes it cannot reach follow in
/// row order): `order[new] = old`.
pub fn bfs_order(g: &FrozenGraph) -> Vec<u32> {
    let mut seen = vec![false; g.n];
    let mut order = Vec::with_capacity(g.n);
    let mut queue = VecDeque::new();
    for start in std::iter::once(g.entry).chain(0..g.n as u32) {
        if g.n == 0 || seen[start as usize] {
            continue;
        }
        seen[start as usize] = true;
        queue.push_back(start);
        while let Some(x) = queue.pop_front() {
            order.push(x);
            for &nb in g.neighbours(x, 0) {
                if !seen[nb as usize] {
                    seen[nb as usize] = true;
                    queue.push_back(nb);
                }
            }
        }
    }
    order
}

/// The same graph and rows with node `order[i]` renamed `i`.
pub fn renumber(graph: &Graph, set: &VectorSet, order: &[u32]) -> (Graph, VectorSet) {
    let g = graph.frozen();
    let mut inv = vec![0u32; g.n];
    for (new, &old) in order.iter().enumerate() {
        inv[old as usize] = new as u32;
    }
    let old_levels = levels(g);
    let new_levels: Vec<u8> = order.iter().map(|&o| old_levels[o as usize]).collect();
    let mut out = FrozenGraph::with_levels(&new_levels, g.m);
    out.max_level = g.max_level;
    out.entry = inv[g.entry as usize];
    for (new, &old) in order.iter().enumerate() {
        for l in 0..=old_levels[old as usize] as usize {
            let row: Vec<u32> = g.neighbours(old, l).iter().map(|&x| inv[x as usize]).collect();
            out.set_neighbours(new as u32, l, &row);
        }
    }
    let mut data = Vec::with_capacity(set.len() * set.dims());
    let mut ids = Vec::with_capacity(set.len());
    for &old in order {
        data.extend_from_slice(set.row(old as usize));
        ids.push(set.id(old as usize).to_string());
    }
    let renamed = VectorSet::from_rows(set.dims(), set.metric(), ids, data);
    let graph = Graph::from_layout(out, &renamed, graph.config(), graph.engine(), graph.build_time());
    (graph, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::hnsw::{build, BuildOptions, HnswConfig};

    #[test]
    fn a_renumbered_graph_answers_the_same_ids() {
        let set = crate::hnsw::tests::random_set(800, 12, Metric::L2, 3);
        let g = build(&set, 800, HnswConfig::DEFAULT, BuildOptions::all_cores());
        assert_eq!(
            levels(g.frozen()).iter().map(|&l| l as usize).max().unwrap_or(0),
            g.frozen().max_level
        );
        let order = bfs_order(g.frozen());
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..800).collect::<Vec<u32>>(), "a permutation");
        let (g2, set2) = renumber(&g, &set, &order);
        for r in (0..800).step_by(7) {
            let a: Vec<&str> = g
                .search(&set, set.row(r), 10, 40)
                .iter()
                .map(|h| set.id(h.row as usize))
                .collect();
            let b: Vec<&str> = g2
                .search(&set2, set.row(r), 10, 40)
                .iter()
                .map(|h| set2.id(h.row as usize))
                .collect();
            assert_eq!(a, b, "row {r}");
        }
    }
}
