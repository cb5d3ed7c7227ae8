//! The graphs one run keeps while it revisits them (ef probes, the winner's validation,
//! interleaved comparisons), bounded by their memory.

use std::sync::Arc;

use crate::params::{Engine, GraphId, HnswConfig};

/// Built graphs kept during one run, least recently used evicted first once their memory
/// passes the cap: a run that revisits a graph (ef probes, the winner's validation) does
/// not rebuild it, and a long run does not hold every graph it built.
#[derive(Debug)]
pub struct GraphCache<G> {
    cap_bytes: usize,
    used: usize,
    /// Most recently used last.
    entries: Vec<CacheEntry<G>>,
    engine: Engine,
}

/// A kept graph and its bytes.
type CacheEntry<G> = (GraphId, Arc<G>, usize);

impl<G> GraphCache<G> {
    /// An empty cache of graphs built by `engine`, holding at most `cap_bytes` (one graph
    /// is kept even if larger).
    pub fn new(cap_bytes: usize, engine: Engine) -> Self {
        GraphCache {
            cap_bytes,
            used: 0,
            entries: Vec::new(),
            engine,
        }
    }

    fn key(&self, c: &HnswConfig) -> GraphId {
        c.graph_id(self.engine)
    }

    /// The graph of `config`'s identity ([`HnswConfig::graph_id`]), if kept.
    pub fn get(&mut self, config: &HnswConfig) -> Option<Arc<G>> {
        let key = self.key(config);
        let i = self.entries.iter().position(|e| e.0 == key)?;
        let e = self.entries.remove(i);
        let g = e.1.clone();
        self.entries.push(e);
        Some(g)
    }

    /// Keeps `graph` of `bytes`, evicting the least recently used as needed.
    pub fn insert(&mut self, config: &HnswConfig, graph: Arc<G>, bytes: usize) {
        let key = self.key(config);
        if let Some(i) = self.entries.iter().position(|e| e.0 == key) {
            self.used -= self.entries.remove(i).2;
        }
        while !self.entries.is_empty() && self.used + bytes > self.cap_bytes {
            self.used -= self.entries.remove(0).2;
        }
        self.used += bytes;
        self.entries.push((key, graph, bytes));
    }

    /// Graphs kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_cache_evicts_least_recently_used_by_memory() {
        let c = |m| HnswConfig {
            m,
            ..HnswConfig::DEFAULT
        };
        let mut cache = GraphCache::new(100, Engine::Native);
        cache.insert(&c(4), Arc::new(4), 40);
        cache.insert(&c(8), Arc::new(8), 40);
        assert_eq!(cache.get(&c(4)).as_deref(), Some(&4)); // 4 is now the most recent
        cache.insert(&c(16), Arc::new(16), 40); // evicts 8
        assert!(cache.get(&c(8)).is_none());
        assert_eq!(cache.len(), 2);
        // ef_search does not matter: same graph
        assert!(cache
            .get(&HnswConfig {
                ef_search: 200,
                ..c(16)
            })
            .is_some());
        // one graph larger than the cap is still kept, alone
        cache.insert(&c(32), Arc::new(32), 500);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&c(32)).is_some());
    }
}
