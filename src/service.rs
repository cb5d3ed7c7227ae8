//! The typed core the HTTP layer (and tests) call: one method per operation.
//!
//! `Vectune` ties the domain modules together — vectors, harnesses, graphs and serving —
//! and owns the cross-cutting rules: builds run on blocking threads behind one semaphore,
//! activations of an index are serialised, and a restart re-activates every index with the
//! config and vector count it last served.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use crate::autotune::{self, AutotuneError, AutotuneResult, Candidate, Running};
use crate::distance::Metric;
use crate::harness::{self as harness_mod, HarnessError, HarnessView, Harnesses, NewQuery};
use crate::hnsw::serving::{self, ActivationRecord, Serving, ServingGraph};
use crate::hnsw::{self, store, BuildMode, ConfigError, HnswConfig, RawHnswConfig};
use crate::names::{HarnessName, IndexName};
use crate::promotion::{PromotedState, PromotionError, Registry};
use crate::storage::{keys, Storage, StorageError};
use crate::trials::{self, Journal, Source, Trial, TrialsError};
use crate::vectors::binary::{self, BinaryFormat};
use crate::vectors::{Batch, Dims, Index, Indexes, NewVector, QueryError, VectorSet, VectorsError};

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
}

/// Result of the service.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

fn candidate(trial_id: uuid::Uuid, config: HnswConfig, m: &trials::TrialMetrics) -> Candidate {
    Candidate {
        trial_id,
        config,
        recall_at_k: m.recall_at_k,
        search_latency_p50_us: m.search_latency_p50_us,
        build_time_secs: m.build_time_secs,
        recall_ci_low: m.recall_ci_low,
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

struct Inner {
    storage: Storage,
    indexes: Indexes,
    harnesses: Harnesses,
    serving: Serving,
    journal: Journal,
    registry: Registry,
    autotunes: Arc<Running>,
    builds: Semaphore,
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
    /// Recall gate, 0..=1 (default 0.9).
    pub min_recall: Option<f64>,
    /// Configs to try (default: the seed grid).
    pub grid: Option<Vec<RawHnswConfig>>,
    /// `max_recall` (default) or `min_latency`.
    pub objective: Option<String>,
    /// Recall bar of `min_latency` (default 0.95).
    pub target_recall: Option<f64>,
    /// `point` (default) or `wilson`.
    pub gate: Option<String>,
    /// `if_better` (default), `always` or `never`.
    pub promote: Option<String>,
}

/// The service: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Vectune {
    inner: Arc<Inner>,
}

impl Vectune {
    /// Loads the registry from `storage`. Call [`Vectune::reactivate_all`] afterwards to
    /// bring back what served before a restart.
    pub async fn open(storage: Storage, build_concurrency: usize) -> Result<Vectune> {
        let indexes = Indexes::load(storage.clone()).await?;
        Ok(Vectune {
            inner: Arc::new(Inner {
                harnesses: Harnesses::new(storage.clone()),
                journal: Journal::new(storage.clone()),
                registry: Registry::new(storage.clone()),
                autotunes: Arc::new(Running::default()),
                storage,
                indexes,
                serving: Serving::default(),
                builds: Semaphore::new(build_concurrency.max(1)),
            }),
        })
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
        self.inner.harnesses.delete_for_index(name).await?;
        self.inner.indexes.delete(name).await?;
        self.inner.serving.remove(name);
        self.inner.journal.forget(name);
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

    /// Builds `config` over the index's vectors and measures it against the harness, on a
    /// blocking thread behind the build semaphore (so a latency measurement never shares
    /// the CPU with another build of this process), then appends it to the journal.
    pub async fn run_trial(&self, req: TrialRequest) -> Result<Arc<Trial>> {
        let ef = req.config.ef_search;
        let mut trials = self.run_graph_trials(req, &[ef]).await?;
        trials
            .pop()
            .ok_or_else(|| ServiceError::Task("no trial measured".into()))
    }

    /// Builds one graph for `req.config`'s `(m, ef_construction, seed)` and measures it at
    /// each of `efs` (ef_search does not change the graph, so sweeping it needs no rebuild);
    /// one journal trial per ef, each with the build time of the graph it used.
    pub async fn run_graph_trials(&self, req: TrialRequest, efs: &[u32]) -> Result<Vec<Arc<Trial>>> {
        let measured = self.measure_graph(&req, efs).await?;
        // the index may have been deleted meanwhile: never write into a deleted prefix
        self.inner.indexes.get(&req.index)?;
        let mut out = Vec::with_capacity(measured.len());
        for (config, metrics) in measured {
            let trial = Trial {
                id: uuid::Uuid::now_v7(),
                index_name: req.index.clone(),
                eval_set: req.harness.clone(),
                config,
                created_at: Utc::now(),
                note: req.note.clone(),
                source: req.source,
                metrics,
                validation: None,
            };
            tracing::info!(index = %req.index, trial = %trial.id, ?config, recall = trial.metrics.recall_at_k,
                p50_us = trial.metrics.search_latency_p50_us, "trial recorded");
            out.push(self.inner.journal.append(trial).await?);
        }
        Ok(out)
    }

    /// Builds `req.config`'s graph and measures it at each of `efs` against the harness,
    /// without writing anything (re-measuring an incumbent adds no trial to the journal).
    async fn measure_graph(
        &self,
        req: &TrialRequest,
        efs: &[u32],
    ) -> Result<Vec<(HnswConfig, trials::TrialMetrics)>> {
        let index = self.inner.indexes.get(&req.index)?;
        let set = self.inner.indexes.vectors(&index).await?;
        let (harness, truth) = self
            .inner
            .harnesses
            .with_ground_truth(&req.harness, &req.index, set.clone())
            .await?;
        let queries = harness_mod::prepared_queries(&harness, &set).map_err(ServiceError::HarnessQuery)?;
        let k = harness.k;
        let config = req.config;
        let efs = efs.to_vec();
        let permit = self
            .inner
            .builds
            .acquire()
            .await
            .map_err(|e| ServiceError::Task(e.to_string()))?;
        let measured = tokio::task::spawn_blocking(move || {
            let graph = hnsw::build(&set, config);
            let brute = trials::brute_force_latency_us(&set, &queries, k);
            efs.into_iter()
                .map(|ef| {
                    let m = trials::measure(&set, &graph, ef as usize, &queries, &truth.rows, k, brute);
                    (ef, m)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))?;
        drop(permit);
        Ok(measured
            .into_iter()
            .map(|(ef, m)| {
                (
                    HnswConfig {
                        ef_search: ef,
                        ..config
                    },
                    m,
                )
            })
            .collect())
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

    /// The journal's trials not dominated in (recall ↑, p50 ↓), optionally of one harness.
    pub async fn pareto(&self, index: &IndexName, harness: Option<&HarnessName>) -> Result<Vec<Arc<Trial>>> {
        self.inner.indexes.get(index)?;
        if let Some(h) = harness {
            self.inner.harnesses.check_index(h, index).await?;
        }
        let journal = self.inner.journal.list(index, harness).await?;
        Ok(trials::pareto(&journal))
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

    /// Promotes an autotune winner with the note that says why it won.
    async fn promote_winner(&self, index: &IndexName, w: &Candidate) -> Result<()> {
        self.inner
            .registry
            .promote(
                index,
                w.config,
                w.trial_id,
                Some("autotune".into()),
                Some(autotune::winner_note(w)),
            )
            .await?;
        Ok(())
    }

    /// Rolls the promotion registry back one step.
    pub async fn rollback(&self, index: &IndexName) -> Result<PromotedState> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.registry.rollback(index).await?)
    }

    /// Measures every config of the plan, picks the winner that clears the recall gate and
    /// promotes it. One run per index at a time.
    pub async fn autotune(&self, req: AutotuneRequest) -> Result<AutotuneResult> {
        let started = Instant::now();
        self.inner.indexes.get(&req.index)?;
        self.inner.harnesses.check_index(&req.harness, &req.index).await?;
        let rules = autotune::Rules::parse(
            req.objective.as_deref(),
            req.target_recall,
            req.gate.as_deref(),
            req.min_recall,
            req.promote.as_deref(),
        )?;
        let plan = autotune::plan(req.grid.as_deref())?;
        let _running = self.inner.autotunes.claim(&req.index)?;
        let groups = autotune::graph_groups(&plan.configs);
        let mut builds = groups.len();
        let mut candidates = Vec::with_capacity(plan.configs.len());
        for (build, efs) in &groups {
            let trials = self
                .run_graph_trials(
                    TrialRequest {
                        index: req.index.clone(),
                        harness: req.harness.clone(),
                        config: *build,
                        note: Some("autotune".into()),
                        source: Source::Autotune,
                    },
                    efs,
                )
                .await?;
            candidates.extend(trials.iter().map(|t| candidate(t.id, t.config, &t.metrics)));
        }
        let eligible = candidates.iter().filter(|c| rules.eligible(c)).count();
        let winner = rules.winner(&candidates).map(|i| candidates[i].clone());
        let (promoted, reason) = match (&winner, rules.promote) {
            (None, _) => (false, Some("no trial passed the run's recall bar".to_string())),
            (Some(_), autotune::Promote::Never) => {
                (false, Some("promote is never: nothing promoted".to_string()))
            }
            (Some(w), autotune::Promote::Always) => {
                self.promote_winner(&req.index, w).await?;
                (true, None)
            }
            (Some(w), autotune::Promote::IfBetter) => {
                match self.inner.registry.get(&req.index).await?.current {
                    None => {
                        self.promote_winner(&req.index, w).await?;
                        (true, Some("nothing was promoted yet".to_string()))
                    }
                    Some(current) => {
                        // the incumbent, re-measured now on the same harness (not journaled)
                        let inc_req = TrialRequest {
                            index: req.index.clone(),
                            harness: req.harness.clone(),
                            config: current.config,
                            note: None,
                            source: Source::Autotune,
                        };
                        let measured = self.measure_graph(&inc_req, &[current.config.ef_search]).await?;
                        builds += 1;
                        let (config, m) = measured
                            .into_iter()
                            .next()
                            .ok_or_else(|| ServiceError::Task("incumbent not measured".into()))?;
                        let (better, why) = rules.beats(w, &candidate(current.trial_id, config, &m));
                        if better {
                            self.promote_winner(&req.index, w).await?;
                        }
                        (better, Some(why))
                    }
                }
            }
        };
        tracing::info!(index = %req.index, trials = candidates.len(), eligible, promoted, reason = ?reason,
            winner = ?winner.as_ref().map(|w| w.config), "autotune done");
        Ok(AutotuneResult {
            index_name: req.index,
            trials_run: candidates.len(),
            trials_eligible: eligible,
            builds,
            winner,
            promoted,
            duration_secs: started.elapsed().as_secs_f64(),
            skipped: plan.skipped,
            reason,
        })
    }

    /// The serving graph of the first `rows` vectors under `config`: loaded from storage
    /// when a sound graph of exactly those vectors and that config is stored, else built
    /// (in parallel, behind the build semaphore) and stored before it is returned. Graphs of
    /// fewer vectors are then garbage: they can never serve again.
    async fn serving_graph(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        rows: usize,
        config: HnswConfig,
    ) -> Result<(hnsw::Graph, bool, f64)> {
        let started = Instant::now();
        let key = keys::graph(index, rows as u64, config.m, config.ef_construction, config.seed);
        if let Some(bytes) = self.inner.storage.get(&key).await? {
            let (dims, metric) = (set.dims(), set.metric());
            let decoded =
                tokio::task::spawn_blocking(move || store::decode(&bytes, rows, dims, metric, config))
                    .await
                    .map_err(|e| ServiceError::Task(e.to_string()))?;
            match decoded {
                Ok(graph) => return Ok((graph, true, started.elapsed().as_secs_f64())),
                Err(e) => {
                    tracing::warn!(index = %index, key = %key, error = %e, "stored graph refused; rebuilding")
                }
            }
        }
        let permit = self
            .inner
            .builds
            .acquire()
            .await
            .map_err(|e| ServiceError::Task(e.to_string()))?;
        let (graph, bytes) = tokio::task::spawn_blocking(move || {
            let graph = hnsw::build_prefix(&set, rows, config, BuildMode::Parallel);
            let bytes = store::encode(&graph, set.dims());
            (graph, bytes)
        })
        .await
        .map_err(|e| ServiceError::Task(e.to_string()))?;
        drop(permit);
        // the index may have been deleted while we built: never write into a deleted prefix
        self.inner.indexes.get(index)?;
        self.inner.storage.put_overwrite(&key, bytes).await?;
        for old in self.inner.storage.list(&keys::graphs(index)).await? {
            if keys::graph_vectors_of(&old).is_some_and(|n| n < rows as u64) {
                self.inner.storage.delete(&old).await?;
            }
        }
        Ok((graph, false, started.elapsed().as_secs_f64()))
    }

    /// Builds the next generation of `name` with the promoted config (or the default) and
    /// swaps it in; searches keep being answered by the previous generation meanwhile.
    pub async fn activate(&self, name: &IndexName) -> Result<Activation> {
        let index = self.inner.indexes.get(name)?;
        let lock = self.inner.serving.activation_lock(name);
        let _one_at_a_time = lock.lock().await;
        let config = self.activation_config(name).await?;
        let set = self.inner.indexes.vectors(&index).await?;
        if set.is_empty() {
            return Err(ServiceError::EmptyIndex(name.clone()));
        }
        tracing::info!(index = %name, ?config, vectors = set.len(), "activation: building");
        let started = Instant::now();
        let (graph, loaded, secs) = self.serving_graph(name, set.clone(), set.len(), config).await?;
        // the index may have been deleted meanwhile: never write into a deleted prefix
        self.inner.indexes.get(name)?;
        let previous = serving::latest_record(&self.inner.storage, name).await?;
        let record = ActivationRecord {
            generation: previous.map_or(1, |r| r.generation + 1),
            config,
            activated_at: Utc::now(),
            vectors: set.len() as u64,
            build_time_secs: secs,
            loaded_from_store: loaded,
            memory_bytes: (graph.memory_bytes() + set.len() * set.dims() * 4) as u64,
        };
        match serving::write_record(&self.inner.storage, name, &record).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => {
                return Err(ServiceError::ActivationConflict(name.clone()))
            }
            Err(e) => return Err(e.into()),
        }
        self.inner.serving.swap(
            name,
            ServingGraph {
                graph,
                vectors: set,
                record: record.clone(),
            },
        );
        tracing::info!(index = %name, generation = record.generation, ?config, loaded_from_store = loaded,
            secs = started.elapsed().as_secs_f64(), "activation: serving");
        Ok(Activation {
            index_name: name.clone(),
            record,
        })
    }

    /// Rebuilds what served before a restart: each index with an activation record, with
    /// the config and vector count of its last activation (not a newer promotion).
    pub async fn reactivate(&self, name: &IndexName) -> Result<bool> {
        let index = self.inner.indexes.get(name)?;
        let Some(record) = serving::latest_record(&self.inner.storage, name).await? else {
            return Ok(false);
        };
        let lock = self.inner.serving.activation_lock(name);
        let _one_at_a_time = lock.lock().await;
        if self.inner.serving.current(name).is_some() {
            return Ok(false); // an explicit activation got there first
        }
        let set = self.inner.indexes.vectors(&index).await?;
        let (graph, loaded, secs) = self
            .serving_graph(name, set.clone(), record.vectors as usize, record.config)
            .await?;
        self.inner.indexes.get(name)?;
        tracing::info!(index = %name, generation = record.generation, config = ?record.config,
            loaded_from_store = loaded, secs, "re-activated after restart");
        self.inner.serving.swap(
            name,
            ServingGraph {
                graph,
                vectors: set,
                record,
            },
        );
        Ok(true)
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
        let hits = live
            .graph
            .search(&live.vectors, &q, k as usize, ef_used as usize)
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
