//! The typed core the HTTP layer (and tests) call: one method per operation.
//!
//! `Vectune` ties the domain modules together — vectors, harnesses, graphs and serving —
//! and owns the cross-cutting rules: builds run on blocking threads behind one semaphore,
//! activations of an index are serialised, and a restart re-activates every index with the
//! config and vector count it last served.

mod agents;
mod live;
mod run;

pub use agents::AgentView;
pub use run::{PreparedAutotune, RunControl, RunEnd};
use std::sync::atomic::AtomicBool;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::autotune::{self, AutotuneError, Running};
use crate::distance::Metric;
use crate::harness::{HarnessError, HarnessView, Harnesses, NewQuery};
use crate::hnsw::serving::{ActivationRecord, Serving, ServingError};
use crate::hnsw::{BuildOptions, ConfigError, HnswConfig};
use crate::jobs::{Job, JobError, JobKind, JobResult, JobState, Jobs, JobsError};
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
    #[error("background task failed: {0}")]
    Task(String),
    /// From the jobs module.
    #[error(transparent)]
    Jobs(#[from] JobsError),
    /// From the agent module.
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
    /// A name that does not parse.
    #[error(transparent)]
    Name(#[from] crate::names::NameError),
    /// A job was cancelled before it changed anything.
    #[error("cancelled")]
    Cancelled,
    /// From the live recall monitor.
    #[error(transparent)]
    Monitor(#[from] crate::monitor::MonitorError),
}

/// How a job's work ended (its failure is the `Err` beside it).
enum JobEnd {
    Succeeded { done: usize, result: JobResult },
    Cancelled { done: usize },
}

/// Result of the service.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Serving's errors in the service's terms (which index they are about).
fn serving_error(index: &IndexName, e: ServingError) -> ServiceError {
    match e {
        ServingError::Storage(e) => ServiceError::Storage(e),
        ServingError::Task(t) => ServiceError::Task(t),
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
    jobs: Jobs,
    agents: agents::Agents,
    monitor: crate::monitor::Monitor,
    /// One agent trial at a time in the process.
    agent_slot: Semaphore,
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
        Self::open_with(
            storage,
            build_concurrency,
            build_options,
            MonitorSettings::default(),
        )
        .await
    }

    /// [`Vectune::open`] with the monitor settings of indexes that set none.
    pub async fn open_with(
        storage: Storage,
        build_concurrency: usize,
        build_options: BuildOptions,
        monitor: MonitorSettings,
    ) -> Result<Vectune> {
        let (monitor, samples) = crate::monitor::Monitor::new(monitor);
        let indexes = Indexes::load(storage.clone()).await?;
        let names: Vec<IndexName> = indexes.list().iter().map(|i| i.meta().name.clone()).collect();
        let jobs = Jobs::load(storage.clone(), &names).await?;
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
                jobs,
                agents: agents::Agents::default(),
                agent_slot: Semaphore::new(1),
                monitor,
            }),
        };
        tokio::spawn(live::worker(Arc::downgrade(&me.inner), samples));
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
            .map_err(|e| ServiceError::Task(e.to_string()))?
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
        self.spawn_job(id, async move {
            Ok(match me.run_prepared(prepared, &control, Some(id)).await? {
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
        let control = RunControl::default();
        let job = self
            .inner
            .jobs
            .create(name, JobKind::Activate, 1, control.clone())
            .await?;
        let (me, name) = (self.clone(), name.clone());
        self.spawn_job(job.id, async move {
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

    /// Runs `work` as job `id`: running, then succeeded / cancelled / failed (with the
    /// error's API code), each state stored as it is reached.
    fn spawn_job(
        &self,
        id: uuid::Uuid,
        work: impl std::future::Future<Output = Result<JobEnd>> + Send + 'static,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let started = me
                .inner
                .jobs
                .update(id, |j| {
                    j.state = JobState::Running;
                    j.started_at = Some(Utc::now());
                })
                .await;
            let ended = match started {
                Ok(_) => work.await,
                Err(e) => Err(e.into()),
            };
            let outcome = me
                .inner
                .jobs
                .update(id, |j| {
                    j.finished_at = Some(Utc::now());
                    match ended {
                        Ok(JobEnd::Succeeded { done, result }) => {
                            j.state = JobState::Succeeded;
                            j.progress.done = done;
                            j.progress.total = j.progress.total.max(done);
                            j.result = Some(result);
                        }
                        Ok(JobEnd::Cancelled { done }) => {
                            j.state = JobState::Cancelled;
                            j.progress.done = done.min(j.progress.total);
                        }
                        Err(e) => {
                            let api = crate::http::error::ApiError::from(e);
                            j.state = JobState::Failed;
                            j.error = Some(JobError {
                                code: api.code().to_string(),
                                message: api.message().to_string(),
                            });
                        }
                    }
                })
                .await;
            match outcome {
                Ok(j) => tracing::info!(job = %id, state = ?j.state, "job ended"),
                Err(e) => tracing::error!(job = %id, error = %e, "job record could not be stored"),
            }
        });
    }

    /// Stops background work before the process exits: running jobs and agents stop at
    /// their next query, so shutdown does not wait for a whole build sweep.
    pub fn stop_background(&self) {
        self.inner.jobs.stop_all();
        self.inner.agents.stop_all();
    }

    /// One job.
    pub fn job(&self, id: &str) -> Result<Job> {
        Ok(self.inner.jobs.get(id)?)
    }

    /// The jobs of an index, newest first.
    pub fn jobs_of(&self, index: &IndexName) -> Result<Vec<Job>> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.jobs.list(index))
    }

    /// Asks a job to stop; answers it as it is now.
    pub fn cancel_job(&self, id: &str) -> Result<Job> {
        Ok(self.inner.jobs.cancel(id)?)
    }

    /// Builds the next generation of `name` with the promoted config (or the default) and
    /// swaps it in; searches keep being answered by the previous generation meanwhile.
    pub async fn activate(&self, name: &IndexName) -> Result<Activation> {
        self.activate_with(name, None).await
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
