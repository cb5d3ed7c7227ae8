//! A restart of a RaBitQ generation: served from its stored links with exact reads at once,
//! its blocks derived behind it and swapped in when ready.
//!
//! Why: RaBitQ blocks are derived, never stored (a function of the vectors and the links),
//! and at 1M × 128, m 24 deriving them takes ~7 s (2 GB of blocks): `scripts/serve_memory.py
//! --config 24,40,37,rabitq` measured restart to serving at 9.0 s, where an f32 or SQ8 index
//! serves in ~2 s. A search of the same links at the same `ef_search` on the f32 rows finds
//! at least as much (exact distances instead of estimates), only slower, so the index serves
//! from the load on and its blocks follow within seconds, in the same generation.

use std::sync::Arc;
use std::time::Duration;

use super::{blocking, stored, Serving, ServingError};
use crate::hnsw::Graph;
use crate::names::IndexName;
use crate::params::Quantization;
use crate::vectors::VectorSet;

/// Rounds of [`Serving::complete_stand_ins`] for one index: a fold-in swapped in while the
/// blocks were derived serves other links, whose blocks are derived again.
const ROUNDS: usize = 3;

impl Serving {
    /// `record`'s stored graph loaded to search on exact reads, when its config derives
    /// RaBitQ blocks (`None` otherwise, or when nothing sound is stored: the caller loads or
    /// builds as for any config).
    pub(super) async fn stand_in(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        record: &super::ActivationRecord,
    ) -> Result<Option<Graph>, ServingError> {
        if record.config.quantization != Quantization::Rabitq {
            return Ok(None);
        }
        let exact = record.config.with_quantization(Quantization::None);
        let key = record.graph_key(index, self.options.engine);
        let rows = record.vectors as usize;
        stored::load_as(
            &self.storage,
            &key,
            set,
            rows,
            record.config,
            exact,
            self.options.engine,
        )
        .await
    }

    /// Derives the blocks of every index a restart serves on a stand-in and swaps them in
    /// (the same generation), unless an activation replaced it meanwhile. How many were
    /// swapped in.
    pub async fn complete_stand_ins(&self) -> Result<usize, ServingError> {
        let pending = std::mem::take(&mut *self.stand_ins.lock().unwrap_or_else(|p| p.into_inner()));
        let mut done = 0;
        for index in pending {
            for _ in 0..ROUNDS {
                let Some(live) = self.current(&index) else {
                    break;
                };
                let config = live.record.config;
                if live.graph.config().quantization == config.quantization {
                    break;
                }
                let (links, set, engine) = (live.graph.links(), live.vectors.clone(), self.options.engine);
                let full = blocking(move || {
                    let g = Graph::from_layout(links, &set, config, engine, Duration::ZERO);
                    // the derivation's scratch (the rotated rows: 512 MB at 1M × 128) back to the OS
                    crate::hnsw::release_free_memory();
                    g
                })
                .await?;
                let lock = self.activation_lock(&index);
                let _one_at_a_time = lock.lock().await;
                // still the stand-in it was derived from: swapped for the same generation
                let same = self.current(&index).is_some_and(|c| {
                    c.record.generation == live.record.generation
                        && Arc::ptr_eq(&c.graph.links(), &live.graph.links())
                });
                if same {
                    tracing::info!(index = %index, generation = live.record.generation,
                        "re-activated generation's RaBitQ blocks derived and swapped in");
                    self.serve(&index, full, live.vectors.clone(), live.record.clone());
                    done += 1;
                    break;
                }
            }
        }
        Ok(done)
    }
}
