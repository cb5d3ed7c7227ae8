//! Trials and the trial journal: "trials are data".
//!
//! A trial is one HNSW config measured against one harness: recall@k against exact ground
//! truth, per-query latency percentiles, build time, memory, and the brute-force cost of
//! the same queries for scale. How those figures are taken lives in [`crate::measure`];
//! this module only keeps them (it knows no graph, so anything may read the journal). Every trial, manual or autotune, is appended to the journal
//! as its own write-once object keyed by a time-ordered UUIDv7, so concurrent writers (in
//! one process or several) can never lose each other's trials and a listing is oldest
//! first by construction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::names::{HarnessName, IndexName};
use crate::params::HnswConfig;
use crate::storage::{keys, Storage, StorageError};

/// Errors of the trials module.
#[derive(Debug, thiserror::Error)]
pub enum TrialsError {
    /// No trial with that id in that index's journal.
    #[error("trial {trial} not found in index {index}")]
    NotFound {
        /// The index.
        index: IndexName,
        /// The id as given.
        trial: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A Pareto `axes` list that does not parse.
    #[error("axes: {0}")]
    InvalidAxes(String),
}

impl crate::error::Classified for TrialsError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            TrialsError::NotFound { .. } => Class::new(K::NotFound, "trial_not_found"),
            TrialsError::Storage(s) => s.classify(),
            TrialsError::InvalidAxes(_) => Class::invalid("invalid_axes"),
        }
    }
}

/// Result of the trials module.
pub type Result<T, E = TrialsError> = std::result::Result<T, E>;

/// Who ran a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `POST /vectors/hnsw/trial`.
    #[default]
    Manual,
    /// An autotune run.
    Autotune,
    /// The background agent.
    Agent,
}

/// What a trial measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialMetrics {
    /// Wall time of the graph build, seconds.
    pub build_time_secs: f64,
    /// Median single-query search latency, µs (after one warm-up pass).
    pub search_latency_p50_us: f64,
    /// 95th percentile, µs.
    pub search_latency_p95_us: f64,
    /// 99th percentile, µs.
    pub search_latency_p99_us: f64,
    /// Fraction of the exact top-k found, over all queries × k.
    pub recall_at_k: f64,
    /// Bytes of what would serve: the f32 rows the graph covers plus the frozen graph's
    /// link arrays (exact sizes of both, not an estimate; the hnsw_rs build structure is
    /// dropped after freezing and not counted).
    pub memory_bytes: u64,
    /// Vectors in the graph.
    pub vectors: u64,
    /// Queries measured.
    pub eval_queries: u64,
    /// Mean exact brute-force time per query on the same queries, one thread, µs.
    pub brute_force_latency_us: f64,
    /// 95 % Wilson lower bound of recall over all query × k slots.
    #[serde(default)]
    pub recall_ci_low: f64,
    /// Mean distance computations per search: a cost no machine's noise changes.
    #[serde(default)]
    pub distance_evals_per_query: f64,
    /// Mean single-query latency, µs.
    #[serde(default)]
    pub search_latency_mean_us: f64,
    /// Single-thread queries per second (1e6 / mean µs).
    #[serde(default)]
    pub qps: f64,
    /// 10th percentile of per-query recall (nearest rank): the tail a mean hides — one
    /// query in ten finds this share of its neighbours or less. 0 in trials journaled
    /// before it was measured.
    #[serde(default)]
    pub recall_p10: f64,
    /// Recall of each query measured, in query order: what the confident gate judges.
    /// Not journaled (the journal keeps the summary figures).
    #[serde(skip)]
    pub per_query_recall: Vec<f32>,
}

/// A winner re-measured on held-out queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Recall on the held-out queries.
    pub recall_at_k: f64,
    /// p50 on them, µs.
    pub search_latency_p50_us: f64,
    /// How many.
    pub eval_queries: u64,
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// UUIDv7: time-ordered.
    pub id: Uuid,
    /// The index.
    pub index_name: IndexName,
    /// The harness measured against (`eval_set` in the contract).
    pub eval_set: HarnessName,
    /// The config built and searched.
    pub config: HnswConfig,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// Free text.
    pub note: Option<String>,
    /// Who ran it.
    #[serde(default)]
    pub source: Source,
    /// The measurements.
    pub metrics: TrialMetrics,
    /// The winner of a run with held-out queries, re-measured on them; else null.
    #[serde(default)]
    pub validation: Option<Validation>,
    /// The epoch of the autotune or agent lease its run held (the fencing token); null
    /// for trials run on their own.
    #[serde(default)]
    pub lease_epoch: Option<u64>,
}

/// An objective of the Pareto frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Recall, higher is better.
    Recall,
    /// p50 latency, lower is better.
    P50,
    /// Memory of what would serve, lower is better.
    Memory,
}

impl Axis {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Axis::Recall => "recall",
            Axis::P50 => "p50",
            Axis::Memory => "memory",
        }
    }

    /// Parses `recall,p50,memory` (any order, at least two distinct axes).
    pub fn parse_list(s: &str) -> Result<Vec<Axis>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let a = match part {
                "recall" => Axis::Recall,
                "p50" => Axis::P50,
                "memory" => Axis::Memory,
                other => {
                    return Err(TrialsError::InvalidAxes(format!(
                        "unknown axis {:?}: axes are recall, p50, memory",
                        other.chars().take(32).collect::<String>()
                    )))
                }
            };
            if out.contains(&a) {
                return Err(TrialsError::InvalidAxes(format!("axis {part} is repeated")));
            }
            out.push(a);
        }
        if out.len() < 2 {
            return Err(TrialsError::InvalidAxes(
                "a frontier needs at least two axes".into(),
            ));
        }
        Ok(out)
    }

    /// The trial's value on this axis, larger is better.
    fn score(self, t: &Trial) -> f64 {
        match self {
            Axis::Recall => t.metrics.recall_at_k,
            Axis::P50 => -t.metrics.search_latency_p50_us,
            Axis::Memory => -(t.metrics.memory_bytes as f64),
        }
    }
}

/// The trials not dominated in (recall ↑, p50 ↓), recall ascending. `u` dominates `t` when
/// it is at least as good on both and strictly better on one, so exact ties both stay.
pub fn pareto(trials: &[Arc<Trial>]) -> Vec<Arc<Trial>> {
    pareto_on(trials, &[Axis::Recall, Axis::P50])
}

/// The trials not dominated on `axes`, recall ascending (then p50 descending).
pub fn pareto_on(trials: &[Arc<Trial>], axes: &[Axis]) -> Vec<Arc<Trial>> {
    let dominated = |t: &Trial| {
        trials.iter().any(|u| {
            axes.iter().all(|a| a.score(u) >= a.score(t)) && axes.iter().any(|a| a.score(u) > a.score(t))
        })
    };
    let mut front: Vec<Arc<Trial>> = trials.iter().filter(|t| !dominated(t)).cloned().collect();
    front.sort_by(|a, b| {
        a.metrics.recall_at_k.total_cmp(&b.metrics.recall_at_k).then(
            b.metrics
                .search_latency_p50_us
                .total_cmp(&a.metrics.search_latency_p50_us),
        )
    });
    front
}

/// The trial journal: write-once trial objects, read back through a cache of their
/// (immutable) bodies.
pub struct Journal {
    storage: Storage,
    cache: Mutex<HashMap<IndexName, HashMap<Uuid, Arc<Trial>>>>,
}

impl Journal {
    /// A journal over `storage`.
    pub fn new(storage: Storage) -> Journal {
        Journal {
            storage,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, index: &IndexName, id: &Uuid) -> Option<Arc<Trial>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(index).and_then(|m| m.get(id)).cloned()
    }

    fn remember(&self, trial: Arc<Trial>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(trial.index_name.clone())
            .or_default()
            .insert(trial.id, trial);
    }

    /// Appends a trial (durable before it returns).
    pub async fn append(&self, trial: Trial) -> Result<Arc<Trial>> {
        self.storage
            .put_json_new(&keys::trial(&trial.index_name, trial.id), &trial)
            .await?;
        let trial = Arc::new(trial);
        self.remember(trial.clone());
        Ok(trial)
    }

    /// One trial of an index; `NotFound` also for ids that are not UUIDs.
    pub async fn get(&self, index: &IndexName, id: &str) -> Result<Arc<Trial>> {
        let not_found = || TrialsError::NotFound {
            index: index.clone(),
            trial: id.chars().take(64).collect(),
        };
        let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
        if let Some(t) = self.cached(index, &uuid) {
            return Ok(t);
        }
        let trial: Trial = self
            .storage
            .get_json(&keys::trial(index, uuid))
            .await?
            .ok_or_else(not_found)?;
        if trial.index_name != *index {
            return Err(not_found());
        }
        let trial = Arc::new(trial);
        self.remember(trial.clone());
        Ok(trial)
    }

    /// Every trial of an index, oldest first, optionally only those of one harness.
    /// The listing comes from storage each time (other writers' trials show up); bodies
    /// come from the cache when known.
    pub async fn list(&self, index: &IndexName, harness: Option<&HarnessName>) -> Result<Vec<Arc<Trial>>> {
        let mut out = Vec::new();
        for key in self.storage.list(&keys::trials(index)).await? {
            let Some(id) = keys::trial_id_of(&key) else {
                continue;
            };
            let trial = match self.cached(index, &id) {
                Some(t) => t,
                None => match self.storage.get_json::<Trial>(&key).await? {
                    Some(t) => {
                        let t = Arc::new(t);
                        self.remember(t.clone());
                        t
                    }
                    None => continue, // deleted between list and get
                },
            };
            if harness.is_none_or(|h| *h == trial.eval_set) {
                out.push(trial);
            }
        }
        // UUIDv7 keys list in time order already; sorting by id makes that explicit
        out.sort_by_key(|t| t.id);
        Ok(out)
    }

    /// Forgets an index's trials (the index was deleted with its objects).
    pub fn forget(&self, index: &IndexName) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_keeps_exactly_the_undominated() {
        let t = |r: f64, p: f64| {
            let mut x = trial("i", "h");
            x.metrics.recall_at_k = r;
            x.metrics.search_latency_p50_us = p;
            Arc::new(x)
        };
        let all = vec![
            t(0.90, 10.0), // front
            t(0.95, 20.0), // front
            t(0.95, 25.0), // dominated by (0.95, 20)
            t(0.80, 15.0), // dominated by (0.90, 10)
            t(0.99, 50.0), // front
            t(0.99, 50.0), // exact tie: front too
            t(0.85, 10.0), // dominated by (0.90, 10): same p50, lower recall
        ];
        let front = pareto(&all);
        let got: Vec<(f64, f64)> = front
            .iter()
            .map(|x| (x.metrics.recall_at_k, x.metrics.search_latency_p50_us))
            .collect();
        assert_eq!(got, vec![(0.90, 10.0), (0.95, 20.0), (0.99, 50.0), (0.99, 50.0)]);
        assert!(pareto(&[]).is_empty());
    }

    fn trial(index: &str, harness: &str) -> Trial {
        Trial {
            id: Uuid::now_v7(),
            index_name: IndexName::parse(index).unwrap(),
            eval_set: HarnessName::parse(harness).unwrap(),
            config: HnswConfig::DEFAULT,
            created_at: Utc::now(),
            note: None,
            source: Source::Manual,
            lease_epoch: None,
            metrics: TrialMetrics {
                build_time_secs: 0.1,
                search_latency_p50_us: 1.0,
                search_latency_p95_us: 2.0,
                search_latency_p99_us: 3.0,
                recall_at_k: 1.0,
                memory_bytes: 10,
                vectors: 5,
                eval_queries: 2,
                brute_force_latency_us: 4.0,
                recall_ci_low: 0.5,
                distance_evals_per_query: 10.0,
                search_latency_mean_us: 1.5,
                qps: 666_666.0,
                recall_p10: 1.0,
                per_query_recall: Vec::new(),
            },
            validation: None,
        }
    }

    #[tokio::test]
    async fn journal_lists_oldest_first_filters_and_survives_a_new_process() {
        let s = Storage::in_memory();
        let j = Journal::new(s.clone());
        let mut ids = Vec::new();
        for h in ["a", "b", "a", "a"] {
            ids.push(j.append(trial("idx", h)).await.unwrap().id);
        }
        j.append(trial("other", "a")).await.unwrap();
        let idx = IndexName::parse("idx").unwrap();
        let fresh = Journal::new(s); // nothing cached: read back from storage
        let all: Vec<Uuid> = fresh
            .list(&idx, None)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(all, ids);
        let a = HarnessName::parse("a").unwrap();
        let only_a: Vec<Uuid> = fresh
            .list(&idx, Some(&a))
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(only_a, vec![ids[0], ids[2], ids[3]]);
        assert_eq!(fresh.get(&idx, &ids[1].to_string()).await.unwrap().id, ids[1]);
        assert!(matches!(
            fresh.get(&idx, "nope").await,
            Err(TrialsError::NotFound { .. })
        ));
        let other = IndexName::parse("other").unwrap();
        assert!(matches!(
            fresh.get(&other, &ids[1].to_string()).await,
            Err(TrialsError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn concurrent_appends_lose_nothing() {
        let j = Arc::new(Journal::new(Storage::in_memory()));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let j = j.clone();
                tokio::spawn(async move { j.append(trial("idx", "h")).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            j.list(&IndexName::parse("idx").unwrap(), None)
                .await
                .unwrap()
                .len(),
            32
        );
    }
}
