//! The climb's quantization, chosen once by a paired comparison.
//!
//! Why: on wide vectors SQ8 serves the same config ~1.8× faster than f32 (pydocs, 384-d:
//! m 12 / efC 320 / ef 56 at 28 µs against 48 µs, the same recall to four places, since the
//! final candidates are re-ranked exactly), so a climb over f32 graphs alone ends far from
//! the fastest config that exists (measured: 2.8× the oracle at .99). On narrow vectors
//! the codes save little and the re-rank costs, and f32 wins. Which one holds on the
//! caller's data is a fact of the machine and the dimensions, so it is measured, not
//! assumed: the climb's first config against its twin in the other quantization (the same
//! links, so no second build), interleaved and paired on the same queries. The climb then
//! searches the faster one; a tie within the noise keeps f32, which holds no codes. The
//! steering afterwards stays by distance evaluations, comparable within one quantization.

use super::{Backend, Phase, Run};
use crate::measure::ROUNDS;
use crate::params::{HnswConfig, Quantization};

/// Recall a faster twin may lose at the compared config and still be chosen.
const RECALL_SLACK: f64 = 0.01;

/// The quantizations the climb may search. Not sq4: its coarser codes move which graph the
/// climb's exact-work steering favours — measured on pydocs (`scripts/tune_bench.sh
/// --trust`), climbing in sq4 walked to m 8 with ef 71–97 at .99, whose held-out recall
/// fell .006–.011 under the target in 4 of 6 runs (against 0 of 6 climbing in sq8). So the
/// graph is chosen as before, and refinement probes the winner's sq4 twin (the same links,
/// derived without a build) with its own ef, so sq4 serves the chosen graph where it is faster.
pub(super) const CLIMBED: [Quantization; 2] = [Quantization::None, Quantization::Sq8];

impl<B: Backend> Run<'_, B> {
    /// After the climb's first measurement (adaptive `min_latency` without a memory cap,
    /// where the codes' bytes could decide eligibility): compares `first` with its twin in
    /// the other quantization the climb may search ([`CLIMBED`]) and sets the climb's. Returns the journal note saying what
    /// the comparison showed; `None` when there was nothing to choose or the run was
    /// cancelled meanwhile (the next step sees the cancel).
    pub(super) async fn choose_quantization(
        &mut self,
        first: HnswConfig,
    ) -> Result<Option<String>, B::Error> {
        if self.climb_quantization.is_some()
            || !self.refines()
            || !matches!(self.phase, Phase::Climb)
            || self.rules().max_memory_bytes.is_some()
        {
            return Ok(None);
        }
        // the other quantization the climb may search (f32 ↔ sq8)
        let Some(q) = CLIMBED.into_iter().find(|&q| q != first.quantization) else {
            return Ok(None);
        };
        let twin = first.with_quantization(q);
        let Some(p) = self.b.paired(&[first, twin], ROUNDS).await? else {
            return Ok(None);
        };
        // the twin wins when it is faster beyond the noise and finds as much (within a
        // hundredth: codes that lose recall at this config would be bought back by a larger
        // ef, which the comparison did not measure)
        let (e, base, recall) = (p.effect(0, 1), p.recall(0).0, p.recall(1).0);
        let chosen = if e.high < 1.0 && recall >= base - RECALL_SLACK {
            q
        } else {
            first.quantization
        };
        self.adaptive.set_quantization(chosen);
        self.climb_quantization = Some(chosen);
        Ok(Some(format!(
            "; quantization at this config over {} queries, paired: {} against {} {} (recall {:.4} vs {:.4}); the climb searches {}",
            p.slots.len(),
            q.as_str(),
            first.quantization.as_str(),
            e.describe(),
            recall,
            base,
            chosen.as_str()
        )))
    }
}
