//! The typed core the HTTP layer (and tests) call: one method per operation.
//!
//! `Vectune` ties the domain modules together — vectors, harnesses, graphs and serving —
//! and owns the cross-cutting rules: builds run on blocking threads behind one semaphore,
//! activations of an index are serialised, and a restart re-activates every index with the
//! config and vector count it last served.

mod agents;
mod data;
mod error;
mod fresh;
mod live;
mod ops;
mod serve;
mod sync;
mod tune;

use error::serving_error;
pub use error::{Result, ServiceError};

pub use crate::autotune::{AutotuneRequest, PreparedAutotune, RunEnd, TrialRequest};
pub use crate::jobs::RunControl;
pub use agents::AgentView;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::agent::Agents;
use crate::autotune::{Tuner, TunerParts};
use crate::distance::Metric;
use crate::fleet::{Claims, Fleet};
use crate::harness::{HarnessView, Harnesses, NewQuery};
use crate::hnsw::BuildOptions;
use crate::jobs::{Job, JobEnd, JobKind, JobResult, Jobs, Ticket, WorkQueue};
use crate::metrics::Metrics;
use crate::monitor::{Monitor, MonitorSettings};
use crate::names::{HarnessName, IndexName};
use crate::params::HnswConfig;
use crate::promotion::{PromotedState, Registry};
use crate::serving::{ActivationRecord, Serving};
use crate::storage::Storage;
use crate::trials::{self, Journal, Trial};
use crate::vectors::binary::{self, BinaryFormat};
use crate::vectors::{Batch, Dims, Index, Indexes, NewVector, VectorsError};

/// Largest `k` of a search.
pub const MAX_SEARCH_K: i64 = 1000;

/// What an index looks like to callers.
#[derive(Debug, Clone)]
pub struct IndexView {
    /// Name.
    pub name: IndexName,
    /// Dimensions.
    pub dims: usize,
    /// Metric.
    pub metric: Metric,
    /// Vectors stored.
    pub vectors: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// What serves, if anything.
    pub active: Option<ActivationRecord>,
    /// Live recall of what serves, once the monitor has samples of it.
    pub live: Option<crate::monitor::LiveStats>,
    /// Writes since what serves was built (with `active`).
    pub fresh: Option<crate::serving::fresh::Fresh>,
}

/// A search answer.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// `(id, distance)`, nearest first.
    pub hits: Vec<(String, f32)>,
    /// The serving config.
    pub config: HnswConfig,
    /// The `ef` actually used: `max(ef_search, k)`.
    pub ef_search_used: u32,
    /// The serving generation.
    pub generation: u64,
}

/// The outcome of an activation.
#[derive(Debug, Clone)]
pub struct Activation {
    /// The index.
    pub index_name: IndexName,
    /// The record now serving.
    pub record: ActivationRecord,
}

/// The service's parts. The data stores are shared (`Arc`) with the components that use
/// them; each component owns its own rules: the [`Tuner`] (trials and autotune runs under
/// their claims), [`Agents`] (the agent loops, their leases and records), [`Serving`]
/// (activation and the swapped slots), [`Monitor`] (live recall), and the fleet's sync
/// clock ([`crate::fleet::sync`]) driving this service as its host.
pub(crate) struct Inner {
    storage: Storage,
    indexes: Arc<Indexes>,
    harnesses: Arc<Harnesses>,
    journal: Arc<Journal>,
    registry: Arc<Registry>,
    serving: Serving,
    tuner: Tuner,
    agents: Agents,
    monitor: Monitor,
    jobs: Arc<Jobs>,
    /// The one bounded queue of heavy work.
    queue: WorkQueue,
    /// What `/metrics` exports.
    metrics: Arc<Metrics>,
    /// Set once start-up re-activation has run (`/ready`).
    reactivated: AtomicBool,
    /// Cancelled when the process stops: sync runs end with `ShuttingDown`.
    shutdown: CancellationToken,
    /// Liveness, leases and what the other instances on the bucket wrote.
    fleet: Arc<Fleet>,
    /// Each index's refresh settings, and the indexes being re-activated by the rule.
    refresh: fresh::Refresh,
}

/// How the service is set up (the server's settings, in the core's terms).
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Builds that may run at once.
    pub build_concurrency: usize,
    /// Engine and threads of every build.
    pub build_options: BuildOptions,
    /// Monitor settings of indexes that set none.
    pub monitor: MonitorSettings,
    /// Heavy work admitted at once (queued or running); more is refused as overloaded.
    pub max_queued_jobs: usize,
    /// Leases and the fleet.
    pub fleet: crate::fleet::FleetOptions,
    /// The bounds of every config (requests, autotune, the agent).
    pub bounds: crate::params::Bounds,
    /// Memory the graphs one tuning run keeps may take.
    pub run_graph_bytes: usize,
    /// Whether autotune builds are spread over the live instances on the bucket.
    pub fleet_builds: bool,
}

impl Default for ServiceOptions {
    fn default() -> ServiceOptions {
        ServiceOptions {
            build_concurrency: 1,
            build_options: BuildOptions::all_cores(),
            monitor: MonitorSettings::default(),
            max_queued_jobs: crate::jobs::DEFAULT_MAX_QUEUED_JOBS,
            fleet: crate::fleet::FleetOptions::default(),
            bounds: crate::params::Bounds::SEED,
            run_graph_bytes: crate::autotune::tuner::RUN_GRAPH_CACHE_BYTES,
            fleet_builds: true,
        }
    }
}

/// The service: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Vectune {
    pub(crate) inner: Arc<Inner>,
}

impl Vectune {
    /// Loads the registry from `storage`. Call [`Vectune::reactivate_all`] afterwards to
    /// bring back what served before a restart.
    pub async fn open(
        storage: Storage,
        build_concurrency: usize,
        build_options: BuildOptions,
    ) -> Result<Vectune> {
        let options = ServiceOptions {
            build_concurrency,
            build_options,
            ..ServiceOptions::default()
        };
        Self::open_with(storage, options).await
    }

    /// [`Vectune::open`] with every option.
    pub async fn open_with(storage: Storage, options: ServiceOptions) -> Result<Vectune> {
        let ServiceOptions {
            build_concurrency,
            build_options,
            monitor,
            max_queued_jobs,
            fleet,
            bounds,
            run_graph_bytes,
            fleet_builds,
        } = options;
        let fleet = Fleet::new(storage.clone(), fleet);
        // alive before owning anything: no other instance may reap what this one starts
        fleet.heartbeat(Default::default()).await?;
        let (monitor, samples) = Monitor::new(monitor);
        let indexes = Arc::new(Indexes::load(storage.clone()).await?);
        let names: Vec<IndexName> = indexes.list().iter().map(|i| i.meta().name.clone()).collect();
        let jobs = Jobs::load(storage.clone(), &names, &fleet).await?;
        let builds = Arc::new(Semaphore::new(build_concurrency.max(1)));
        let serving = Serving::new(storage.clone(), builds.clone(), build_options);
        let harnesses = Arc::new(Harnesses::new(storage.clone()));
        let journal = Arc::new(Journal::new(storage.clone()));
        let registry = Arc::new(Registry::new(storage.clone()));
        let metrics = Arc::new(Metrics::new());
        let tuner = Tuner::new(TunerParts {
            indexes: indexes.clone(),
            harnesses: harnesses.clone(),
            journal: journal.clone(),
            registry: registry.clone(),
            claims: Arc::new(Claims::new(fleet.clone())),
            builds,
            build_slots: build_concurrency.clamp(1, u32::MAX as usize) as u32,
            build_options,
            metrics: metrics.clone(),
            bounds,
            run_graph_bytes,
            storage: storage.clone(),
            fleet_builds,
        });
        let agents = Agents::new(fleet.clone(), storage.clone());
        let me = Vectune {
            inner: Arc::new(Inner {
                harnesses,
                journal,
                registry,
                tuner,
                storage,
                indexes,
                serving,
                jobs: Arc::new(jobs),
                queue: WorkQueue::new(max_queued_jobs),
                metrics,
                reactivated: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                agents,
                monitor,
                fleet,
                refresh: fresh::Refresh::default(),
            }),
        };
        tokio::spawn(live::worker(Arc::downgrade(&me.inner), samples));
        let weak = Arc::downgrade(&me.inner);
        tokio::spawn(crate::fleet::sync::run(move || {
            weak.upgrade().map(|inner| Vectune { inner })
        }));
        if fleet_builds {
            tokio::spawn(tune::fleet_builder(Arc::downgrade(&me.inner)));
        }
        me.load_live().await?;
        me.load_refresh().await?;
        Ok(me)
    }

    /// The store.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The bounds every config is checked against (the server's `[tuning]` settings).
    pub fn bounds(&self) -> crate::params::Bounds {
        self.inner.tuner.bounds()
    }

    fn view(&self, index: &Index) -> IndexView {
        let meta = index.meta();
        let active = self.inner.serving.current(&meta.name).map(|g| g.record.clone());
        IndexView {
            name: meta.name.clone(),
            dims: meta.dims.get(),
            metric: meta.metric,
            vectors: index.total(),
            created_at: meta.created_at,
            active: active.clone(),
            live: self.live(&meta.name),
            fresh: active.map(|r| crate::serving::fresh::Fresh::since(&r, index.rows(), index.total())),
        }
    }
}
