//! Jobs: autotunes that run in the background, with progress, cancel and a persisted record.
//!
//! A job record is state, not history: it is rewritten in place (`put_overwrite`) as the job
//! moves queued → running → succeeded | failed | cancelled, under the index's prefix (so an
//! index deletion takes its jobs with it). Records are loaded at start-up; a job a previous
//! process left queued or running can no longer be running anywhere in this process, so it
//! becomes `failed` with error code `interrupted` before the service answers anything.
//!
//! The live parts of a running job — its cancel flag and its count of finished trials —
//! are shared with the run itself through [`RunControl`]; reads of a live job take its
//! progress from there, so polling never touches storage.
//!
//! Heavy work — builds, trials, ground truth, autotunes, activations, sync or as a job —
//! is admitted through one bounded [`WorkQueue`]: a [`Ticket`] is held from admission to
//! the end of the work, and when `limits.max_queued_jobs` tickets are out a new request is
//! refused (`overloaded`, HTTP 503 with `Retry-After`) instead of joining an unbounded
//! backlog. Admitted work then waits for build permits; searches take no ticket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::autotune::AutotuneResult;
use crate::error::Classified;
use crate::hnsw::serving::ActivationRecord;
use crate::names::IndexName;
use crate::storage::{keys, Storage, StorageError};

/// Errors of the jobs module.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    /// No such job (also for ids that are not UUIDs).
    #[error("job {0} not found")]
    NotFound(String),
    /// The heavy-work queue is full.
    #[error("the heavy-work queue is full ({limit} builds, trials, autotunes and activations admitted); retry later")]
    Overloaded {
        /// `limits.max_queued_jobs`.
        limit: usize,
    },
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl crate::error::Classified for JobsError {
    fn classify(&self) -> crate::error::Class {
        use crate::error::{Class, ErrorKind as K};
        match self {
            JobsError::NotFound(_) => Class::new(K::NotFound, "job_not_found"),
            JobsError::Overloaded { .. } => Class::new(K::Overloaded, "overloaded"),
            JobsError::Storage(s) => s.classify(),
        }
    }
}

/// Result of the jobs module.
pub type Result<T, E = JobsError> = std::result::Result<T, E>;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not started.
    Queued,
    /// Running.
    Running,
    /// Ended with a result.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Stopped by a cancel.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `POST /vectors/hnsw/autotune?async=true`.
    Autotune,
    /// `POST /vectors/indexes/{index}/activate?async=true`.
    Activate,
}

/// What a succeeded job answers: the autotune result, or the activation's record (the
/// same fields the sync activation answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobResult {
    /// An autotune's result.
    Autotune(Box<AutotuneResult>),
    /// An activation's.
    Activate {
        /// The index.
        index_name: IndexName,
        /// What serves now.
        #[serde(flatten)]
        record: ActivationRecord,
    },
}

/// Trials finished of those planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Finished (and journaled).
    pub done: usize,
    /// Planned: the grid's configs, or `max_trials` for adaptive (which may end below).
    pub total: usize,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// Machine-readable, as in the API's error bodies (`interrupted` after a crash).
    pub code: String,
    /// For humans.
    pub message: String,
}

/// A job record, as stored and as answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// UUIDv7.
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// The index.
    pub index_name: IndexName,
    /// Where it is.
    pub state: JobState,
    /// Trials done of planned.
    pub progress: Progress,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// Started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended at.
    pub finished_at: Option<DateTime<Utc>>,
    /// The result, once succeeded.
    pub result: Option<JobResult>,
    /// The error, once failed.
    pub error: Option<JobError>,
}

/// Shared with whoever watches a run: a cancel flag read between trials and between
/// queries, and the count of trials finished (and journaled).
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Set to stop the run at its next trial or query boundary.
    pub cancel: Arc<AtomicBool>,
    /// Trials finished.
    pub done: Arc<AtomicUsize>,
}

/// How a job's work ended (its failure is the `Err` beside it).
#[derive(Debug)]
pub enum JobEnd {
    /// It ran to the end.
    Succeeded {
        /// Trials (or steps) done.
        done: usize,
        /// What it answers.
        result: JobResult,
    },
    /// It stopped on a cancel, having changed nothing after `done` steps.
    Cancelled {
        /// Steps done before it stopped.
        done: usize,
    },
}

/// Heavy work admitted at once unless `limits.max_queued_jobs` says otherwise.
pub const DEFAULT_MAX_QUEUED_JOBS: usize = 16;

/// The one bounded queue of heavy work (see the module doc). Cheap to clone.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    admitted: Arc<AtomicUsize>,
    limit: usize,
}

/// Admission of one piece of heavy work; its slot frees when this drops.
#[derive(Debug)]
pub struct Ticket {
    admitted: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkQueue {
    /// A queue admitting at most `limit` pieces of work at once (at least one).
    pub fn new(limit: usize) -> WorkQueue {
        WorkQueue {
            admitted: Arc::default(),
            limit: limit.max(1),
        }
    }

    /// A ticket, or `Overloaded` when `limit` are out; never waits.
    pub fn try_admit(&self) -> Result<Ticket> {
        let got = self
            .admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            });
        match got {
            Ok(_) => Ok(Ticket {
                admitted: self.admitted.clone(),
            }),
            Err(_) => Err(JobsError::Overloaded { limit: self.limit }),
        }
    }

    /// Tickets out now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

struct Live {
    job: Job,
    control: Option<RunControl>,
}

impl Live {
    fn view(&self) -> Job {
        let mut job = self.job.clone();
        if let (Some(c), false) = (&self.control, job.state.is_terminal()) {
            job.progress.done = c.done.load(Ordering::Relaxed).min(job.progress.total);
        }
        job
    }
}

/// Every job of this process's store.
pub struct Jobs {
    storage: Storage,
    live: Mutex<HashMap<Uuid, Live>>,
}

impl Jobs {
    /// Loads the job records of `indexes`; those left queued or running by a previous
    /// process are marked `failed` / `interrupted` (and stored so).
    pub async fn load(storage: Storage, indexes: &[IndexName]) -> Result<Jobs> {
        let mut live = HashMap::new();
        for index in indexes {
            for key in storage.list(&keys::jobs(index)).await? {
                if keys::job_id_of(&key).is_none() {
                    continue;
                }
                let Some(mut job) = storage.get_json::<Job>(&key).await? else {
                    continue;
                };
                if !job.state.is_terminal() {
                    job.state = JobState::Failed;
                    job.finished_at = Some(Utc::now());
                    job.error = Some(JobError {
                        code: "interrupted".into(),
                        message: "the process running this job stopped before it ended".into(),
                    });
                    storage.put_json_overwrite(&key, &job).await?;
                    tracing::warn!(job = %job.id, index = %job.index_name, "job interrupted by a restart");
                }
                live.insert(job.id, Live { job, control: None });
            }
        }
        Ok(Jobs {
            storage,
            live: Mutex::new(live),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new queued job, durable before it returns.
    pub async fn create(
        &self,
        index: &IndexName,
        kind: JobKind,
        total: usize,
        control: RunControl,
    ) -> Result<Job> {
        let job = Job {
            id: Uuid::now_v7(),
            kind,
            index_name: index.clone(),
            state: JobState::Queued,
            progress: Progress { done: 0, total },
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
        };
        self.storage
            .put_json_overwrite(&keys::job(index, job.id), &job)
            .await?;
        self.lock().insert(
            job.id,
            Live {
                job: job.clone(),
                control: Some(control),
            },
        );
        Ok(job)
    }

    /// Applies `change` to a job and stores it.
    pub async fn update(&self, id: Uuid, change: impl FnOnce(&mut Job)) -> Result<Job> {
        let job = {
            let mut live = self.lock();
            let l = live
                .get_mut(&id)
                .ok_or_else(|| JobsError::NotFound(id.to_string()))?;
            let mut job = l.view();
            change(&mut job);
            l.job = job.clone();
            if job.state.is_terminal() {
                l.control = None;
            }
            job
        };
        self.storage
            .put_json_overwrite(&keys::job(&job.index_name, job.id), &job)
            .await?;
        Ok(job)
    }

    /// One job, with live progress.
    pub fn get(&self, id: &str) -> Result<Job> {
        let uuid = Uuid::parse_str(id).map_err(|_| JobsError::NotFound(id.chars().take(64).collect()))?;
        self.lock()
            .get(&uuid)
            .map(Live::view)
            .ok_or_else(|| JobsError::NotFound(id.to_string()))
    }

    /// The jobs of an index, newest first.
    pub fn list(&self, index: &IndexName) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .lock()
            .values()
            .filter(|l| l.job.index_name == *index)
            .map(Live::view)
            .collect();
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        jobs
    }

    /// Asks a job to stop at its next trial or query boundary; answers the job as it is
    /// now (an ended job is left as it ended).
    pub fn cancel(&self, id: &str) -> Result<Job> {
        let uuid = Uuid::parse_str(id).map_err(|_| JobsError::NotFound(id.chars().take(64).collect()))?;
        let live = self.lock();
        let l = live
            .get(&uuid)
            .ok_or_else(|| JobsError::NotFound(id.to_string()))?;
        if let (Some(c), false) = (&l.control, l.job.state.is_terminal()) {
            c.cancel.store(true, Ordering::Relaxed);
        }
        Ok(l.view())
    }

    /// Raises the cancel flag of every running job (the process is stopping: their
    /// measurements end at the next query; their records stay `running` and become
    /// `interrupted` at the next start, which is what happened to them).
    pub fn stop_all(&self) {
        for l in self.lock().values() {
            if let Some(c) = &l.control {
                c.cancel.store(true, Ordering::Relaxed);
            }
        }
    }

    /// How many jobs are in each state (every state named, zeros too).
    pub fn count_by_state(&self) -> Vec<(&'static str, u64)> {
        let mut n = [0u64; 5];
        for l in self.lock().values() {
            let at = match l.job.state {
                JobState::Queued => 0,
                JobState::Running => 1,
                JobState::Succeeded => 2,
                JobState::Failed => 3,
                JobState::Cancelled => 4,
            };
            n[at] += 1;
        }
        ["queued", "running", "succeeded", "failed", "cancelled"]
            .into_iter()
            .zip(n)
            .collect()
    }

    /// Forgets the jobs of a deleted index (their records went with its prefix); running
    /// ones are cancelled.
    pub fn forget(&self, index: &IndexName) {
        self.lock().retain(|_, l| {
            if l.job.index_name != *index {
                return true;
            }
            if let Some(c) = &l.control {
                c.cancel.store(true, Ordering::Relaxed);
            }
            false
        });
    }

    /// Runs `work` as job `id` on the runtime: running, then succeeded / cancelled /
    /// failed (with the error's code), each state stored as it is reached. `ticket` is held
    /// until the work ends, so the job occupies its place in the [`WorkQueue`] meanwhile.
    pub fn spawn<E>(
        self: &Arc<Self>,
        id: Uuid,
        ticket: Ticket,
        work: impl std::future::Future<Output = Result<JobEnd, E>> + Send + 'static,
    ) where
        E: Classified + From<JobsError> + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            let started = me
                .update(id, |j| {
                    j.state = JobState::Running;
                    j.started_at = Some(Utc::now());
                })
                .await;
            let ended = match started {
                Ok(_) => work.await,
                Err(e) => Err(E::from(e)),
            };
            drop(ticket);
            let outcome = me
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
                            j.state = JobState::Failed;
                            j.error = Some(JobError {
                                code: e.classify().code.to_string(),
                                message: crate::error::public_message(&e),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_queue_admits_up_to_its_limit_and_frees_a_place_on_drop() {
        let q = WorkQueue::new(2);
        let a = q.try_admit().unwrap();
        let b = q.try_admit().unwrap();
        assert_eq!(q.admitted(), 2);
        assert!(matches!(q.try_admit(), Err(JobsError::Overloaded { limit: 2 })));
        assert_eq!(q.admitted(), 2, "a refusal takes no place");
        drop(a);
        let c = q.try_admit().unwrap();
        drop((b, c));
        assert_eq!(q.admitted(), 0);
        // a limit of 0 would refuse everything forever: it is raised to 1
        assert_eq!(WorkQueue::new(0).limit(), 1);
    }

    fn index() -> IndexName {
        IndexName::parse("jobs_ix").unwrap()
    }

    #[tokio::test]
    async fn lifecycle_is_persisted_and_live_progress_is_read_from_the_run() {
        let storage = Storage::in_memory();
        let jobs = Jobs::load(storage.clone(), &[index()]).await.unwrap();
        let ctl = RunControl::default();
        let job = jobs
            .create(&index(), JobKind::Autotune, 3, ctl.clone())
            .await
            .unwrap();
        assert_eq!(job.state, JobState::Queued);
        jobs.update(job.id, |j| {
            j.state = JobState::Running;
            j.started_at = Some(Utc::now());
        })
        .await
        .unwrap();
        ctl.done.store(2, Ordering::Relaxed);
        assert_eq!(jobs.get(&job.id.to_string()).unwrap().progress.done, 2);
        // a cancel only raises the flag; the run ends the job
        let seen = jobs.cancel(&job.id.to_string()).unwrap();
        assert_eq!(seen.state, JobState::Running);
        assert!(ctl.cancel.load(Ordering::Relaxed));
        jobs.update(job.id, |j| {
            j.state = JobState::Cancelled;
            j.finished_at = Some(Utc::now());
        })
        .await
        .unwrap();
        // stored as it ended, progress included
        let stored: Job = storage
            .get_json(&keys::job(&index(), job.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((stored.state, stored.progress.done), (JobState::Cancelled, 2));
        assert!(jobs.get("not-a-uuid").is_err());
        assert!(jobs.cancel(&Uuid::now_v7().to_string()).is_err());
    }

    #[tokio::test]
    async fn a_restart_marks_unfinished_jobs_interrupted_and_keeps_ended_ones() {
        let storage = Storage::in_memory();
        let jobs = Jobs::load(storage.clone(), &[index()]).await.unwrap();
        let running = jobs
            .create(&index(), JobKind::Autotune, 5, RunControl::default())
            .await
            .unwrap();
        jobs.update(running.id, |j| j.state = JobState::Running)
            .await
            .unwrap();
        let done = jobs
            .create(&index(), JobKind::Autotune, 1, RunControl::default())
            .await
            .unwrap();
        jobs.update(done.id, |j| j.state = JobState::Succeeded)
            .await
            .unwrap();
        let queued = jobs
            .create(&index(), JobKind::Autotune, 1, RunControl::default())
            .await
            .unwrap();

        let again = Jobs::load(storage.clone(), &[index()]).await.unwrap();
        for id in [running.id, queued.id] {
            let j = again.get(&id.to_string()).unwrap();
            assert_eq!(j.state, JobState::Failed);
            assert_eq!(j.error.unwrap().code, "interrupted");
        }
        assert_eq!(
            again.get(&done.id.to_string()).unwrap().state,
            JobState::Succeeded
        );
        let listed: Vec<Uuid> = again.list(&index()).iter().map(|j| j.id).collect();
        assert_eq!(listed, vec![queued.id, done.id, running.id], "newest first");
        // and it was stored so: a third start sees the same
        let third = Jobs::load(storage, &[index()]).await.unwrap();
        assert_eq!(
            third.get(&running.id.to_string()).unwrap().state,
            JobState::Failed
        );
    }

    #[test]
    fn both_results_round_trip_through_their_stored_form() {
        let activation = JobResult::Activate {
            index_name: index(),
            record: ActivationRecord {
                generation: 3,
                config: crate::hnsw::HnswConfig::DEFAULT,
                activated_at: Utc::now(),
                vectors: 10,
                build_time_secs: 0.5,
                loaded_from_store: true,
                memory_bytes: 100,
            },
        };
        let autotune = JobResult::Autotune(Box::new(AutotuneResult {
            index_name: index(),
            trials_run: 2,
            trials_eligible: 1,
            builds: 1,
            winner: None,
            promoted: false,
            duration_secs: 1.0,
            skipped: vec![],
            reason: Some("r".into()),
            job_id: None,
            refinement: None,
            ineligible: vec![],
            validations: 0,
            near_ties: vec![],
        }));
        for r in [activation, autotune] {
            let json = serde_json::to_value(&r).unwrap();
            assert!(
                json.get("kind").is_none(),
                "untagged: the same fields as the sync answers"
            );
            assert_eq!(serde_json::from_value::<JobResult>(json).unwrap(), r);
        }
    }
}
