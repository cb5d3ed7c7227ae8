//! The typed core the HTTP layer (and tests) call: one method per operation.
//!
//! `Vectune` ties the domain modules together — vectors, harnesses, graphs and serving —
//! and owns the cross-cutting rules: builds run on blocking threads behind one semaphore,
//! activations of an index are serialised, and a restart re-activates every index with the
//! config and vector count it last served.

mod agents;
mod data;
mod error;
mod live;
mod ops;
mod run;
mod serve;
mod sync;

use error::serving_error;
pub use error::{Result, ServiceError};

pub use crate::jobs::RunControl;
pub use agents::AgentView;
pub use run::{PreparedAutotune, RunEnd};
use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::autotune::{self, Running};
use crate::distance::Metric;
use crate::harness::{HarnessView, Harnesses, NewQuery};
use crate::hnsw::BuildOptions;
use crate::jobs::{Job, JobEnd, JobKind, JobResult, Jobs, Ticket, WorkQueue};
use crate::monitor::MonitorSettings;
use crate::names::{HarnessName, IndexName};
use crate::params::HnswConfig;
use crate::promotion::{PromotedState, Registry};
use crate::serving::{ActivationRecord, Serving};
use crate::storage::Storage;
use crate::trials::{self, Journal, Source, Trial};
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

pub(crate) struct Inner {
    storage: Storage,
    indexes: Indexes,
    harnesses: Harnesses,
    serving: Serving,
    journal: Journal,
    registry: Registry,
    autotunes: Arc<Running>,
    /// Build permits, shared with serving: a trial's build and measurement takes them all.
    builds: Arc<Semaphore>,
    /// Permits of `builds`: a measurement takes them all, so no build runs beside it.
    build_slots: u32,
    /// Engine and threads of every build (trials and activation alike).
    build_options: BuildOptions,
    jobs: Arc<Jobs>,
    /// The one bounded queue of heavy work.
    queue: WorkQueue,
    /// What `/metrics` exports.
    metrics: crate::metrics::Metrics,
    /// Set once start-up re-activation has run (`/ready`).
    reactivated: AtomicBool,
    /// Raised when the process stops: sync runs end with `ShuttingDown`.
    shutdown: Arc<AtomicBool>,
    agents: agents::Agents,
    monitor: crate::monitor::Monitor,
    /// One agent trial at a time in the process.
    agent_slot: Semaphore,
    /// Liveness, leases and what the other instances on the bucket wrote.
    fleet: Arc<crate::fleet::Fleet>,
}

/// A trial to run.
#[derive(Debug, Clone)]
pub struct TrialRequest {
    /// The index.
    pub index: IndexName,
    /// The harness to measure against.
    pub harness: HarnessName,
    /// The config to build and search.
    pub config: HnswConfig,
    /// Free text for the journal.
    pub note: Option<String>,
    /// Who asks.
    pub source: Source,
}

/// An autotune to run.
#[derive(Debug, Clone)]
pub struct AutotuneRequest {
    /// The index.
    pub index: IndexName,
    /// The harness to measure against.
    pub harness: HarnessName,
    /// Everything else, as received (checked by [`autotune::Spec::parse`]).
    pub fields: autotune::SpecFields,
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
}

impl Default for ServiceOptions {
    fn default() -> ServiceOptions {
        ServiceOptions {
            build_concurrency: 1,
            build_options: BuildOptions::all_cores(),
            monitor: MonitorSettings::default(),
            max_queued_jobs: crate::jobs::DEFAULT_MAX_QUEUED_JOBS,
            fleet: crate::fleet::FleetOptions::default(),
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
        } = options;
        let fleet = crate::fleet::Fleet::new(storage.clone(), fleet);
        // alive before owning anything: no other instance may reap what this one starts
        fleet.heartbeat(Default::default()).await?;
        let (monitor, samples) = crate::monitor::Monitor::new(monitor);
        let indexes = Indexes::load(storage.clone()).await?;
        let names: Vec<IndexName> = indexes.list().iter().map(|i| i.meta().name.clone()).collect();
        let jobs = Jobs::load(storage.clone(), &names, &fleet).await?;
        let builds = Arc::new(Semaphore::new(build_concurrency.max(1)));
        let serving = Serving::new(storage.clone(), builds.clone(), build_options);
        let me = Vectune {
            inner: Arc::new(Inner {
                harnesses: Harnesses::new(storage.clone()),
                journal: Journal::new(storage.clone()),
                registry: Registry::new(storage.clone()),
                autotunes: Arc::new(Running::default()),
                storage,
                indexes,
                serving,
                builds,
                build_slots: build_concurrency.clamp(1, u32::MAX as usize) as u32,
                build_options,
                jobs: Arc::new(jobs),
                queue: WorkQueue::new(max_queued_jobs),
                metrics: crate::metrics::Metrics::new(),
                reactivated: AtomicBool::new(false),
                shutdown: Arc::default(),
                agents: agents::Agents::default(),
                agent_slot: Semaphore::new(1),
                monitor,
                fleet,
            }),
        };
        tokio::spawn(live::worker(Arc::downgrade(&me.inner), samples));
        tokio::spawn(sync::worker(Arc::downgrade(&me.inner)));
        me.load_live().await?;
        Ok(me)
    }

    /// The store.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    fn view(&self, index: &Index) -> IndexView {
        let meta = index.meta();
        IndexView {
            name: meta.name.clone(),
            dims: meta.dims.get(),
            metric: meta.metric,
            vectors: index.total(),
            created_at: meta.created_at,
            active: self.inner.serving.current(&meta.name).map(|g| g.record.clone()),
            live: self.live(&meta.name),
        }
    }

    /// Starts an autotune as a job and answers at once. Everything a sync autotune would
    /// refuse (400, 404, 409) is refused here too, before a job exists.
    pub async fn autotune_async(&self, req: AutotuneRequest) -> Result<Job> {
        let prepared = self.prepare_autotune(req, Source::Autotune).await?;
        let ticket = self.admit()?;
        let control = RunControl::default();
        let job = self
            .inner
            .jobs
            .create(
                &prepared.index,
                JobKind::Autotune,
                prepared.spec.planned_trials(),
                control.clone(),
            )
            .await?;
        let (me, id) = (self.clone(), job.id);
        self.inner.jobs.spawn(id, ticket, async move {
            Ok::<_, ServiceError>(match me.run_prepared(prepared, &control, Some(id)).await? {
                RunEnd::Finished(r) => JobEnd::Succeeded {
                    done: r.trials_run,
                    result: JobResult::Autotune(r),
                },
                RunEnd::Cancelled { trials_run } => JobEnd::Cancelled { done: trials_run },
            })
        });
        Ok(job)
    }
}
