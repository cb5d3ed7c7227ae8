//! What the engine's run loop needs from the world, as a trait: the service implements it
//! over real graphs, the journal and the registry; the engine's tests over a fake whose
//! trials take no time.

use std::future::Future;

use uuid::Uuid;

use super::Candidate;
use crate::measure::Paired;
use crate::params::{Engine, HnswConfig};
use crate::trials::{TrialMetrics, Validation};

/// A trial for the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Its id (time-ordered).
    pub id: Uuid,
    /// The config measured.
    pub config: HnswConfig,
    /// What it measured.
    pub metrics: TrialMetrics,
    /// Who ran it and, for a trial that broke a cap or came from refinement, a word on it.
    pub note: String,
    /// The winner's figures on the held-out queries.
    pub validation: Option<Validation>,
}

/// What a run needs from the world.
pub trait Backend: Send {
    /// What can go wrong.
    type Error: Send;
    /// Measures `config` on the tuning (or held-out) queries, building its graph unless
    /// the run holds it. `None` when the run was cancelled meanwhile.
    fn measure(
        &mut self,
        config: HnswConfig,
        held_out: bool,
    ) -> impl Future<Output = Result<Option<TrialMetrics>, Self::Error>> + Send;
    /// Measures `configs` interleaved on the tuning queries, `rounds` rounds. `None` when
    /// cancelled.
    fn paired(
        &mut self,
        configs: &[HnswConfig],
        rounds: usize,
    ) -> impl Future<Output = Result<Option<Paired>, Self::Error>> + Send;
    /// Journals a trial.
    fn record(&mut self, trial: Recorded) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// The promoted config and its trial, if any.
    fn incumbent(&mut self) -> impl Future<Output = Result<Option<(Uuid, HnswConfig)>, Self::Error>> + Send;
    /// Promotes the winner.
    fn promote(&mut self, winner: &Candidate) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Graphs built so far (at every size).
    fn builds(&self) -> usize;
    /// Live rows of the index the run tunes.
    fn rows(&self) -> usize;
    /// From now on measures on a uniform sample of `sample` of the index's live rows,
    /// against the sample's own exact ground truth (`Some`), or on the full index again
    /// (`None`); graphs held for the other size are dropped. Says which builder the
    /// scope's graphs are built by (the backend chooses it: a sample's graphs only rank
    /// configs, [`crate::autotune::transfer::sample_engine`]), so the run's graph ids and
    /// build forecasts follow the builds it gets. `None` when the run was cancelled
    /// meanwhile.
    fn scope(
        &mut self,
        sample: Option<usize>,
    ) -> impl Future<Output = Result<Option<Engine>, Self::Error>> + Send;
    /// The graphs of `configs` the run is about to need: a backend with other instances
    /// beside it offers them to be built there ([`crate::fleet::work`]); a hint, never
    /// required (the default does nothing).
    fn prefetch(&mut self, configs: &[HnswConfig]) -> impl Future<Output = Result<(), Self::Error>> + Send {
        let _ = configs;
        async { Ok(()) }
    }
    /// Of [`Backend::builds`], the graphs another instance built for the run.
    fn builds_elsewhere(&self) -> usize {
        0
    }
    /// Whether the run was asked to stop.
    fn cancelled(&self) -> bool;
    /// Trials finished so far (for progress).
    fn progress(&mut self, trials: usize);
}

/// How a run is set up beside its [`Spec`].
#[derive(Debug, Clone)]
pub struct Setup {
    /// Journal trials at the end (the run holds queries out).
    pub defer: bool,
    /// The journal note of its trials (`autotune`, `agent`).
    pub note: String,
    /// The builder (graph identity: which configs share a build).
    pub engine: Engine,
    /// Seed of the adaptive search's configs.
    pub seed: u64,
}
