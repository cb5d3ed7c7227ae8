//! The typed core the HTTP layer (and tests) call: one method per operation.
//!
//! `Vectune` ties the domain modules together — vectors, harnesses, graphs and serving —
//! and owns the cross-cutting rules: builds run on blocking threads behind one semaphore,
//! activations of an index are serialised, and a restart re-activates every index with the
//! config and vector count it last served.

mod agents;
mod live;
mod run;
mod sync;

pub use crate::jobs::RunControl;
pub use agents::AgentView;
pub use run::{PreparedAutotune, RunEnd};
use std::sync::atomic::{AtomicBool, Ordering};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::autotune::{self, AutotuneError, Running};
use crate::distance::Metric;
use crate::harness::{HarnessError, HarnessView, Harnesses, NewQuery};
use crate::hnsw::serving::{ActivationRecord, Serving, ServingError};
use crate::hnsw::{BuildOptions, ConfigError, HnswConfig};
use crate::jobs::{Job, JobEnd, JobKind, JobResult, Jobs, JobsError, Ticket, WorkQueue};
use crate::monitor::MonitorSettings;
use crate::names::{HarnessName, IndexName};
use crate::promotion::{PromotedState, PromotionError, Registry};
use crate::storage::{Storage, StorageError};
use crate::trials::{self, Journal, Source, Trial, TrialsError};
use crate::vectors::binary::{self, BinaryFormat};
use crate::vectors::{Batch, Dims, Index, Indexes, NewVector, QueryError, VectorsError};

/// Largest `k` of a search.
pub const MAX_SEARCH_K: i64 = 1000;

/// Errors of the core service (each domain's error, plus the service's own rules).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// From the vectors module.
    #[error(transparent)]
    Vectors(#[from] VectorsError),
    /// From the harness module.
    #[error(transparent)]
    Harness(#[from] HarnessError),
    /// A config out of bounds.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// From the trial journal.
    #[error(transparent)]
    Trials(#[from] TrialsError),
    /// From the promotion registry.
    #[error(transparent)]
    Promotion(#[from] PromotionError),
    /// From the autotune rules.
    #[error(transparent)]
    Autotune(#[from] AutotuneError),
    /// A harness query that cannot be searched (the index changed under it).
    #[error("harness query cannot be searched: {0}")]
    HarnessQuery(QueryError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A search before any activation (or before the start-up rebuild finished).
    #[error("index {0} is not active: activate it first (POST /vectors/indexes/{0}/activate)")]
    NotActive(IndexName),
    /// Activation of an index with no vectors.
    #[error("index {0} has no vectors to build a graph from")]
    EmptyIndex(IndexName),
    /// A query vector that cannot be searched.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// `k` of a search out of range.
    #[error("k must be between 1 and {MAX_SEARCH_K}, got {0}")]
    InvalidK(i64),
    /// A concurrent activation of the same generation won.
    #[error("index {0} was activated concurrently; retry")]
    ActivationConflict(IndexName),
    /// A blocking task died.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
    /// From the jobs module.
    #[error(transparent)]
    Jobs(#[from] JobsError),
    /// From the agent module.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// A name that does not parse.
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// An invariant of the service broke (a bug, not bad input).
    #[error("internal invariant broken: {0}")]
    Internal(&'static str),
    /// Not ready yet (start-up is under way).
    #[error("not ready: {0}")]
    Starting(&'static str),
    /// Work cut short because the process is stopping.
    #[error("the server is shutting down; retry against another instance or after restart")]
    ShuttingDown,
    /// A job was cancelled before it changed anything.
    #[error("cancelled")]
    Cancelled,
    /// From the live recall monitor.
    #[error(transparent)]
    Monitor(#[from] crate::monitor::MonitorError),
    /// The run's lease was taken over (or expired): it stopped before writing more.
    #[error(transparent)]
    LeaseLost(crate::fleet::LeaseLost),
}

impl crate::error::Classified for ServiceError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        use ServiceError as S;
        match self {
            S::Vectors(v) => v.classify(),
            S::Harness(h) => h.classify(),
            S::Storage(s) => s.classify(),
            S::Config(_) => Class::invalid("invalid_config"),
            S::Trials(t) => t.classify(),
            S::Promotion(p) => p.classify(),
            S::Autotune(a) => a.classify(),
            S::HarnessQuery(_) => Class::new(K::Unprocessable, "invalid_harness"),
            S::NotActive(_) => Class::new(K::Conflict, "not_active"),
            S::EmptyIndex(_) => Class::new(K::Conflict, "index_empty"),
            S::Query(_) => Class::invalid("invalid_query"),
            S::InvalidK(_) => Class::invalid("invalid_k"),
            S::ActivationConflict(_) => Class::new(K::Conflict, "concurrent_write"),
            S::Task(_) | S::Internal(_) => Class::INTERNAL,
            S::Jobs(j) => j.classify(),
            S::Agent(_) => Class::invalid("invalid_agent_config"),
            S::Name(n) => n.classify(),
            S::Cancelled => Class::new(K::Conflict, "cancelled"),
            S::ShuttingDown => Class::new(K::ShuttingDown, "shutting_down"),
            S::Starting(_) => Class::new(K::Unavailable, "not_ready"),
            S::Monitor(_) => Class::invalid("invalid_monitor_settings"),
            S::LeaseLost(_) => Class::new(K::Conflict, "lease_lost"),
        }
    }
}

/// Result of the service.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Serving's errors in the service's terms (which index they are about).
fn serving_error(index: &IndexName, e: ServingError) -> ServiceError {
    match e {
        ServingError::Storage(e) => ServiceError::Storage(e),
        ServingError::Task(t) => ServiceError::Task(t),
        ServingError::Closed => ServiceError::Internal("the build semaphore is closed"),
        ServingError::Conflict => ServiceError::ActivationConflict(index.clone()),
        ServingError::Cancelled => ServiceError::Cancelled,
        ServingError::IndexGone => ServiceError::Vectors(VectorsError::IndexNotFound(index.clone())),
    }
}

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

    /// Creates an index.
    pub async fn create_index(&self, name: IndexName, dims: Dims, metric: Metric) -> Result<IndexView> {
        let index = self.inner.indexes.create(name, dims, metric).await?;
        Ok(self.view(&index))
    }

    /// Every index, by name.
    pub fn list_indexes(&self) -> Vec<IndexView> {
        self.inner.indexes.list().iter().map(|i| self.view(i)).collect()
    }

    /// One index.
    pub fn get_index(&self, name: &IndexName) -> Result<IndexView> {
        let index = self.inner.indexes.get(name)?;
        Ok(self.view(&index))
    }

    /// Deletes an index, its harnesses and its serving graph.
    pub async fn delete_index(&self, name: &IndexName) -> Result<()> {
        self.inner.indexes.get(name)?;
        // stop what would write under the index first
        self.forget_agent(name);
        self.inner.jobs.forget(name);
        self.inner.harnesses.delete_for_index(name).await?;
        self.inner.indexes.delete(name).await?;
        self.inner.serving.remove(name);
        self.inner.journal.forget(name);
        self.inner.monitor.forget(name);
        Ok(())
    }

    /// Appends a batch, whole or not at all. Returns `(appended, total)`.
    pub async fn append(&self, name: &IndexName, vectors: Vec<NewVector>) -> Result<(usize, u64)> {
        let index = self.inner.indexes.get(name)?;
        let batch = Batch::parse(index.meta(), vectors)?;
        Ok(self.inner.indexes.append(&index, batch).await?)
    }

    /// Appends a binary body (fvecs or npy) with ids assigned from the index's total.
    /// Returns `(appended, total, first_id, last_id)`.
    pub async fn append_binary(
        &self,
        name: &IndexName,
        format: &str,
        body: bytes::Bytes,
    ) -> Result<(usize, u64, String, String)> {
        let index = self.inner.indexes.get(name)?;
        let format = BinaryFormat::parse(format)
            .ok_or_else(|| VectorsError::InvalidFormat(format.chars().take(32).collect()))?;
        let dims = index.meta().dims.get();
        let data = tokio::task::spawn_blocking(move || binary::parse(format, &body, dims))
            .await
            .map_err(ServiceError::Task)?
            .map_err(VectorsError::from)?;
        Ok(self.inner.indexes.append_rows(&index, data).await?)
    }

    /// Creates a harness from explicit queries.
    pub async fn create_harness(
        &self,
        name: HarnessName,
        index: &IndexName,
        k: i64,
        queries: Vec<NewQuery>,
    ) -> Result<HarnessView> {
        let index = self.inner.indexes.get(index)?;
        let _ticket = self.admit()?;
        Ok(self
            .inner
            .harnesses
            .create_explicit(&self.inner.indexes, name, &index, k, queries)
            .await?)
    }

    /// Creates a harness by sampling stored vectors.
    pub async fn autogen_harness(
        &self,
        name: HarnessName,
        index: &IndexName,
        queries: i64,
        k: i64,
        seed: u64,
    ) -> Result<HarnessView> {
        let index = self.inner.indexes.get(index)?;
        let _ticket = self.admit()?;
        Ok(self
            .inner
            .harnesses
            .create_autogen(&self.inner.indexes, name, &index, queries, k, seed)
            .await?)
    }

    /// A harness; its ground truth is included when it matches the index's vectors.
    pub async fn get_harness(&self, name: &HarnessName) -> Result<HarnessView> {
        let indexes = &self.inner.indexes;
        Ok(self
            .inner
            .harnesses
            .get(name, |i| indexes.get(i).ok().map(|i| i.total()))
            .await?)
    }

    /// The config the next activation of `index` builds with: the promoted one, else the
    /// default.
    async fn activation_config(&self, index: &IndexName) -> Result<HnswConfig> {
        let state = self.inner.registry.get(index).await?;
        Ok(state.current.map_or(HnswConfig::DEFAULT, |e| e.config))
    }

    /// The journal of an index, oldest first, optionally of one harness.
    pub async fn list_trials(
        &self,
        index: &IndexName,
        harness: Option<&HarnessName>,
    ) -> Result<Vec<Arc<Trial>>> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.journal.list(index, harness).await?)
    }

    /// The journal's trials not dominated on `axes` (default recall ↑, p50 ↓), optionally
    /// of one harness.
    pub async fn pareto(
        &self,
        index: &IndexName,
        harness: Option<&HarnessName>,
        axes: &[trials::Axis],
    ) -> Result<Vec<Arc<Trial>>> {
        self.inner.indexes.get(index)?;
        if let Some(h) = harness {
            self.inner.harnesses.check_index(h, index).await?;
        }
        let journal = self.inner.journal.list(index, harness).await?;
        Ok(trials::pareto_on(&journal, axes))
    }

    /// One trial.
    pub async fn get_trial(&self, index: &IndexName, id: &str) -> Result<Arc<Trial>> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.journal.get(index, id).await?)
    }

    /// The promotion registry of an index.
    pub async fn promoted(&self, index: &IndexName) -> Result<PromotedState> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.registry.get(index).await?)
    }

    /// Promotes a journal trial's config. Does not rebuild: the next activation uses it.
    pub async fn promote(
        &self,
        index: &IndexName,
        trial_id: &str,
        by: Option<String>,
        note: Option<String>,
    ) -> Result<PromotedState> {
        self.inner.indexes.get(index)?;
        let trial = self.inner.journal.get(index, trial_id).await?;
        let state = self
            .inner
            .registry
            .promote(index, trial.config, trial.id, by, note)
            .await?;
        tracing::info!(index = %index, trial = %trial.id, config = ?trial.config, "promoted");
        Ok(state)
    }

    /// Rolls the promotion registry back one step.
    pub async fn rollback(&self, index: &IndexName) -> Result<PromotedState> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.registry.rollback(index).await?)
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

    /// Starts an activation as a job and answers at once (an unknown or empty index is
    /// refused first, with no job). A cancel before the new graph is swapped in leaves the
    /// previous generation serving (a graph already built stays stored for the next
    /// activation); once swapped, the activation has happened.
    pub async fn activate_async(&self, name: &IndexName) -> Result<Job> {
        if self.inner.indexes.get(name)?.total() == 0 {
            return Err(ServiceError::EmptyIndex(name.clone()));
        }
        let ticket = self.admit()?;
        let control = RunControl::default();
        let job = self
            .inner
            .jobs
            .create(name, JobKind::Activate, 1, control.clone())
            .await?;
        let (me, name) = (self.clone(), name.clone());
        self.inner.jobs.spawn(job.id, ticket, async move {
            match me.activate_with(&name, Some(&control.cancel)).await {
                Ok(a) => Ok(JobEnd::Succeeded {
                    done: 1,
                    result: JobResult::Activate {
                        index_name: a.index_name,
                        record: a.record,
                    },
                }),
                Err(ServiceError::Cancelled) => Ok(JobEnd::Cancelled { done: 0 }),
                Err(e) => Err(e),
            }
        });
        Ok(job)
    }

    /// Admits one piece of heavy work, or refuses it at once when the queue is full.
    pub fn admit(&self) -> Result<Ticket> {
        if self.is_shutting_down() {
            return Err(ServiceError::ShuttingDown);
        }
        self.inner.queue.try_admit().map_err(|e| {
            self.inner.metrics.refused();
            tracing::warn!(
                limit = self.inner.queue.limit(),
                "heavy work refused: the queue is full"
            );
            ServiceError::from(e)
        })
    }

    /// `Ok` once start-up re-activation has run and the store answers; `Unavailable`
    /// before, `ShuttingDown` once the process stops.
    pub async fn ready(&self) -> Result<()> {
        if self.is_shutting_down() {
            return Err(ServiceError::ShuttingDown);
        }
        if !self.inner.reactivated.load(Ordering::Acquire) {
            return Err(ServiceError::Starting(
                "re-activating what served before the restart",
            ));
        }
        self.inner.storage.ping().await?;
        Ok(())
    }

    /// The service's counters (bumped by the HTTP layer for requests).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.inner.metrics
    }

    /// The Prometheus exposition, gauges read from the state now.
    pub fn metrics_text(&self) -> String {
        use crate::metrics::{IndexSnapshot, Snapshot};
        let indexes = self
            .inner
            .indexes
            .list()
            .iter()
            .map(|ix| {
                let name = &ix.meta().name;
                IndexSnapshot {
                    name: name.to_string(),
                    vectors: ix.total(),
                    generation: self.inner.serving.current(name).map(|g| g.record.generation),
                    live_recall: self.live(name).filter(|l| l.queries > 0).map(|l| l.recall_at_k),
                }
            })
            .collect();
        let fleet = &self.inner.fleet;
        let kinds = |counts: &[std::sync::atomic::AtomicU64; 2]| {
            crate::fleet::LeaseKind::ALL
                .iter()
                .zip(counts)
                .map(|(k, n)| (k.as_str().to_string(), n.load(Ordering::Relaxed)))
                .collect()
        };
        let fleet = crate::metrics::FleetSnapshot {
            instance: fleet.id().to_string(),
            host: fleet.me().host.clone(),
            instances: fleet.stats.instances.load(Ordering::Relaxed),
            leases: fleet
                .held()
                .into_iter()
                .map(|(k, i, e)| (k.as_str().to_string(), i.to_string(), e))
                .collect(),
            takeovers: kinds(&fleet.stats.takeovers),
            lost: kinds(&fleet.stats.lost),
            pickups: fleet.stats.pickups.load(Ordering::Relaxed),
            reaped: fleet.stats.reaped.load(Ordering::Relaxed),
            serving: fleet
                .fleet_view()
                .into_iter()
                .flat_map(|(id, serving)| serving.into_iter().map(move |(ix, g)| (id.to_string(), ix, g)))
                .collect(),
        };
        let snapshot = Snapshot {
            fleet,
            indexes,
            jobs: self.inner.jobs.count_by_state(),
            queue_admitted: self.inner.queue.admitted() as u64,
            queue_capacity: self.inner.queue.limit() as u64,
        };
        self.inner.metrics.render(&snapshot)
    }

    /// The heavy-work queue (its occupancy is a metric).
    pub fn queue(&self) -> &WorkQueue {
        &self.inner.queue
    }

    /// Whether [`Vectune::stop_background`] ran.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.load(Ordering::Relaxed)
    }

    /// The flag sync work checks between steps: raised at shutdown.
    fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.inner.shutdown.clone()
    }

    /// Stops background work before the process exits: running jobs, agents and sync
    /// runs stop at their next query, so shutdown does not wait for a whole build sweep
    /// (a sync request cut short answers `shutting_down`).
    pub fn stop_background(&self) {
        self.inner.shutdown.store(true, Ordering::Relaxed);
        self.inner.jobs.stop_all();
        self.inner.agents.stop_all();
    }

    fn index_names(&self) -> Vec<IndexName> {
        self.inner
            .indexes
            .list()
            .iter()
            .map(|i| i.meta().name.clone())
            .collect()
    }

    /// Leaves the fleet on a clean stop: the liveness record is deleted, so the others
    /// count this instance dead at once.
    pub async fn leave_fleet(&self) {
        if let Err(e) = self.inner.fleet.leave().await {
            tracing::warn!(error = %e, "liveness record not deleted; it expires by itself");
        }
    }

    /// One job (another instance's as stored).
    pub async fn job(&self, id: &str) -> Result<Job> {
        Ok(self.inner.jobs.get(id, &self.index_names()).await?)
    }

    /// The jobs of an index, newest first.
    pub async fn jobs_of(&self, index: &IndexName) -> Result<Vec<Job>> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.jobs.list(index).await?)
    }

    /// Asks a job to stop; answers it as it is now.
    pub async fn cancel_job(&self, id: &str) -> Result<Job> {
        Ok(self.inner.jobs.cancel(id, &self.index_names()).await?)
    }

    /// This instance's place in the fleet.
    pub fn fleet(&self) -> &Arc<crate::fleet::Fleet> {
        &self.inner.fleet
    }

    /// Builds the next generation of `name` with the promoted config (or the default) and
    /// swaps it in; searches keep being answered by the previous generation meanwhile.
    pub async fn activate(&self, name: &IndexName) -> Result<Activation> {
        self.inner.indexes.get(name)?;
        let _ticket = self.admit()?;
        let stop = self.shutdown_flag();
        match self.activate_with(name, Some(&stop)).await {
            Err(ServiceError::Cancelled) => Err(ServiceError::ShuttingDown),
            other => other,
        }
    }

    /// [`Vectune::activate`], stopping with `Cancelled` if `cancel` is raised before the
    /// new generation is swapped in.
    async fn activate_with(&self, name: &IndexName, cancel: Option<&AtomicBool>) -> Result<Activation> {
        let index = self.inner.indexes.get(name)?;
        let config = self.activation_config(name).await?;
        let set = self.inner.indexes.vectors(&index).await?;
        if set.is_empty() {
            return Err(ServiceError::EmptyIndex(name.clone()));
        }
        let record = (self.inner.serving)
            .activate(name, set, config, &|| self.index_exists(name), cancel)
            .await
            .map_err(|e| serving_error(name, e))?;
        if !record.loaded_from_store {
            (self.inner.metrics).build(crate::metrics::BuildPurpose::activation, record.build_time_secs);
        }
        Ok(Activation {
            index_name: name.clone(),
            record,
        })
    }

    fn index_exists(&self, name: &IndexName) -> bool {
        self.inner.indexes.get(name).is_ok()
    }

    /// Rebuilds (or loads) what served before a restart: each index with an activation
    /// record, with the config and vector count of its last activation.
    pub async fn reactivate(&self, name: &IndexName) -> Result<bool> {
        let index = self.inner.indexes.get(name)?;
        let Some(record) = self.inner.serving.latest_record(name).await? else {
            return Ok(false);
        };
        let set = self.inner.indexes.vectors(&index).await?;
        (self.inner.serving)
            .reactivate(name, set, record, &|| self.index_exists(name))
            .await
            .map_err(|e| serving_error(name, e))
    }

    /// Starts re-activation of every previously active index in the background.
    pub fn reactivate_all(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            for index in me.inner.indexes.list() {
                let name = index.meta().name.clone();
                if let Err(e) = me.reactivate(&name).await {
                    tracing::error!(index = %name, error = %e, "re-activation after restart failed");
                }
            }
            // ready even if one index failed to come back: the others serve, and the
            // failed one answers `not_active` until it is activated again (the log says why)
            me.inner.reactivated.store(true, Ordering::Release);
        })
    }

    /// Searches the serving generation of `name`.
    pub fn search(
        &self,
        name: &IndexName,
        vector: &[f32],
        k: i64,
        ef_search: Option<i64>,
    ) -> Result<SearchResult> {
        self.inner.indexes.get(name)?;
        if !(1..=MAX_SEARCH_K).contains(&k) {
            return Err(ServiceError::InvalidK(k));
        }
        let live = self
            .inner
            .serving
            .current(name)
            .ok_or_else(|| ServiceError::NotActive(name.clone()))?;
        let config = live.record.config;
        let ef = match ef_search {
            Some(ef) => config.with_ef_search(ef)?.ef_search,
            None => config.ef_search,
        };
        let q = live.vectors.prepare_query(vector)?;
        let ef_used = ef.max(k as u32);
        let found = live.graph.search(&live.vectors, &q, k as usize, ef_used as usize);
        self.sample_search(
            name,
            &live,
            &q,
            vector,
            || found.iter().map(|h| h.row).collect(),
            k as usize,
        );
        let hits = found
            .into_iter()
            .map(|h| (live.vectors.id(h.row as usize).to_string(), h.distance))
            .collect();
        Ok(SearchResult {
            hits,
            config,
            ef_search_used: ef_used,
            generation: live.record.generation,
        })
    }
}
