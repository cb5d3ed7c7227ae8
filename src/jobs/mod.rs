//! Jobs: autotunes that run in the background, with progress, cancel and a persisted record.
//!
//! A job record is state, not history: it is rewritten in place (`put_overwrite`) as the job
//! moves queued → running → succeeded | failed | cancelled, under the index's prefix (so an
//! index deletion takes its jobs with it). Each record names its owner, the instance that
//! runs it. A job left queued or running by an instance that is no longer alive (its
//! liveness lease expired, or it is provably dead: see [`crate::fleet`]) becomes `failed`
//! with error code `interrupted` — at start-up, before the service answers anything, and
//! periodically after — while a live instance's jobs are left alone. Other instances' jobs
//! are read from the store (ended ones once, then cached: they never change), and a cancel
//! of one leaves a marker its owner picks up within a sync interval.
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::autotune::AutotuneResult;
use crate::error::Classified;
use crate::fleet::Fleet;
use crate::names::IndexName;
use crate::serving::ActivationRecord;
use crate::storage::{keys, Storage, StorageError};

mod queue;
pub use queue::{Ticket, WorkQueue, DEFAULT_MAX_QUEUED_JOBS};

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
    /// The build under way: rows inserted of its rows (`None` between builds). A job
    /// cancelled during a build keeps where the build stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildStep>,
}

/// Rows a build has inserted, of its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildStep {
    /// Inserted so far (counted at each round's end).
    pub done: usize,
    /// The build's rows.
    pub total: usize,
}

impl BuildStep {
    /// Where the build `p` watches stands, if one is under way (or stopped).
    pub fn of(p: &crate::hnsw::native::BuildProgress) -> Option<BuildStep> {
        p.get().map(|(done, total)| BuildStep { done, total })
    }
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
    /// The instance that runs it (absent in records of older versions: nobody's).
    #[serde(default)]
    pub owner: Option<Uuid>,
}

/// Shared with whoever watches a run: a cancel flag read between trials and between
/// queries, and the count of trials finished (and journaled).
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    /// Cancelled to stop the run at its next trial or query boundary.
    pub cancel: CancellationToken,
    /// Trials finished.
    pub done: Arc<AtomicUsize>,
    /// Rows of the build under way.
    pub build: Arc<crate::hnsw::native::BuildProgress>,
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
        /// Where the build under way stopped, if one was.
        build: Option<BuildStep>,
    },
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
            job.progress.build = BuildStep::of(&c.build);
        }
        job
    }
}

/// Every job this instance runs or has seen end.
pub struct Jobs {
    storage: Storage,
    /// This instance: the owner written into the jobs it creates.
    me: Uuid,
    live: Mutex<HashMap<Uuid, Live>>,
}

/// The record of a job whose owner is gone.
fn interrupted(mut job: Job) -> Job {
    job.state = JobState::Failed;
    job.finished_at = Some(Utc::now());
    job.error = Some(JobError {
        code: "interrupted".into(),
        message: "the instance running this job stopped before it ended".into(),
    });
    job
}

impl Jobs {
    /// The jobs of `indexes` as instance `me` (of `fleet`) sees them at start-up: those left
    /// queued or running by an instance that is no longer alive are marked `failed` /
    /// `interrupted` (and stored so).
    pub async fn load(storage: Storage, indexes: &[IndexName], fleet: &Fleet) -> Result<Jobs> {
        let jobs = Jobs {
            storage,
            me: fleet.id(),
            live: Mutex::new(HashMap::new()),
        };
        jobs.reap(indexes, fleet).await?;
        Ok(jobs)
    }

    /// Marks `interrupted` every unfinished job of `indexes` whose owner is not alive;
    /// caches every ended job. Returns how many it marked.
    pub async fn reap(&self, indexes: &[IndexName], fleet: &Fleet) -> Result<usize> {
        let mut marked = 0;
        for index in indexes {
            for key in self.storage.list(&keys::jobs(index)).await? {
                let Some(id) = keys::job_id_of(&key) else {
                    continue;
                };
                if self
                    .lock()
                    .get(&id)
                    .is_some_and(|l| l.control.is_some() || l.job.state.is_terminal())
                {
                    continue; // ours, or ended
                }
                let Some(job) = self.storage.get_json::<Job>(&key).await? else {
                    continue;
                };
                let job = match (job.state.is_terminal(), job.owner) {
                    (true, _) => job,
                    (false, Some(owner)) if fleet.instance_alive(owner).await? => continue,
                    (false, _) => {
                        let job = interrupted(job);
                        self.storage.put_json_overwrite(&key, &job).await?;
                        marked += 1;
                        tracing::warn!(job = %job.id, index = %job.index_name, owner = ?job.owner,
                            "job interrupted: its instance is gone");
                        job
                    }
                };
                self.lock().insert(job.id, Live { job, control: None });
            }
        }
        Ok(marked)
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
            progress: Progress {
                done: 0,
                total,
                build: None,
            },
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            owner: Some(self.me),
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

    /// A job as stored, cached when it has ended (it never changes again).
    async fn read(&self, index: &IndexName, id: Uuid) -> Result<Option<Job>> {
        let Some(job) = self.storage.get_json::<Job>(&keys::job(index, id)).await? else {
            return Ok(None);
        };
        if job.state.is_terminal() {
            self.lock().insert(
                id,
                Live {
                    job: job.clone(),
                    control: None,
                },
            );
        }
        Ok(Some(job))
    }

    /// One job, with live progress when it runs here; another instance's from the store.
    /// `indexes` are where to look for a job not seen here yet.
    pub async fn get(&self, id: &str, indexes: &[IndexName]) -> Result<Job> {
        let uuid = Uuid::parse_str(id).map_err(|_| JobsError::NotFound(id.chars().take(64).collect()))?;
        if let Some(job) = self.lock().get(&uuid).map(Live::view) {
            return Ok(job);
        }
        for index in indexes {
            if let Some(job) = self.read(index, uuid).await? {
                return Ok(job);
            }
        }
        Err(JobsError::NotFound(id.to_string()))
    }

    /// The jobs of an index, newest first: this instance's with live progress, the others'
    /// as stored.
    pub async fn list(&self, index: &IndexName) -> Result<Vec<Job>> {
        let mut jobs = Vec::new();
        for key in self.storage.list(&keys::jobs(index)).await? {
            let Some(id) = keys::job_id_of(&key) else {
                continue;
            };
            let known = self.lock().get(&id).map(Live::view);
            match known {
                Some(j) => jobs.push(j),
                None => jobs.extend(self.read(index, id).await?),
            }
        }
        // ours, created after the listing was taken
        let listed: std::collections::HashSet<Uuid> = jobs.iter().map(|j| j.id).collect();
        jobs.extend(
            self.lock()
                .values()
                .filter(|l| l.job.index_name == *index && l.control.is_some() && !listed.contains(&l.job.id))
                .map(Live::view),
        );
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(jobs)
    }

    /// Asks a job to stop at its next trial or query boundary; answers the job as it is
    /// now (an ended job is left as it ended). Another instance's job gets a cancel marker
    /// in the store, which its owner acts on within a sync interval.
    pub async fn cancel(&self, id: &str, indexes: &[IndexName]) -> Result<Job> {
        let uuid = Uuid::parse_str(id).map_err(|_| JobsError::NotFound(id.chars().take(64).collect()))?;
        {
            let live = self.lock();
            if let Some(l) = live.get(&uuid) {
                if let (Some(c), false) = (&l.control, l.job.state.is_terminal()) {
                    c.cancel.cancel();
                }
                return Ok(l.view());
            }
        }
        let job = self.get(id, indexes).await?;
        if !job.state.is_terminal() {
            self.storage
                .put_overwrite(&keys::job_cancel(&job.index_name, job.id), bytes::Bytes::new())
                .await?;
        }
        Ok(job)
    }

    /// Raises the cancel flag of this instance's jobs that another instance asked to
    /// cancel (their markers are removed once the flag is up).
    pub async fn take_cancel_markers(&self) -> Result<usize> {
        let running: Vec<(IndexName, Uuid, CancellationToken)> = self
            .lock()
            .values()
            .filter(|l| !l.job.state.is_terminal())
            .filter_map(|l| {
                l.control
                    .as_ref()
                    .map(|c| (l.job.index_name.clone(), l.job.id, c.cancel.clone()))
            })
            .collect();
        let mut n = 0;
        for (index, id, flag) in running {
            let marker = keys::job_cancel(&index, id);
            if self.storage.get(&marker).await?.is_some() {
                flag.cancel();
                self.storage.delete(&marker).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Raises the cancel flag of every running job (the process is stopping: their
    /// measurements end at the next query; their records stay `running` and become
    /// `interrupted` at the next start, which is what happened to them).
    pub fn stop_all(&self) {
        for l in self.lock().values() {
            if let Some(c) = &l.control {
                c.cancel.cancel();
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
                c.cancel.cancel();
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
                        Ok(JobEnd::Cancelled { done, build }) => {
                            j.state = JobState::Cancelled;
                            j.progress.done = done.min(j.progress.total);
                            j.progress.build = build;
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

    fn fleet(storage: &Storage) -> Arc<Fleet> {
        Fleet::new(storage.clone(), crate::fleet::FleetOptions::default())
    }

    #[tokio::test]
    async fn lifecycle_is_persisted_and_live_progress_is_read_from_the_run() {
        let storage = Storage::in_memory();
        let f = fleet(&storage);
        let jobs = Jobs::load(storage.clone(), &[index()], &f).await.unwrap();
        let ctl = RunControl::default();
        let job = jobs
            .create(&index(), JobKind::Autotune, 3, ctl.clone())
            .await
            .unwrap();
        assert_eq!((job.state, job.owner), (JobState::Queued, Some(f.id())));
        jobs.update(job.id, |j| {
            j.state = JobState::Running;
            j.started_at = Some(Utc::now());
        })
        .await
        .unwrap();
        ctl.done.store(2, Ordering::Relaxed);
        let id = job.id.to_string();
        assert_eq!(jobs.get(&id, &[]).await.unwrap().progress.done, 2);
        // a cancel only raises the flag; the run ends the job
        let seen = jobs.cancel(&id, &[]).await.unwrap();
        assert_eq!(seen.state, JobState::Running);
        assert!(ctl.cancel.is_cancelled());
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
        assert!(jobs.get("not-a-uuid", &[index()]).await.is_err());
        assert!(jobs
            .cancel(&Uuid::now_v7().to_string(), &[index()])
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_dead_owners_unfinished_jobs_are_interrupted_and_ended_ones_kept() {
        let storage = Storage::in_memory();
        // the first instance never wrote a liveness record: it is not alive
        let jobs = Jobs::load(storage.clone(), &[index()], &fleet(&storage))
            .await
            .unwrap();
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

        let again = Jobs::load(storage.clone(), &[index()], &fleet(&storage))
            .await
            .unwrap();
        for id in [running.id, queued.id] {
            let j = again.get(&id.to_string(), &[index()]).await.unwrap();
            assert_eq!(j.state, JobState::Failed);
            assert_eq!(j.error.unwrap().code, "interrupted");
        }
        assert_eq!(
            again.get(&done.id.to_string(), &[]).await.unwrap().state,
            JobState::Succeeded
        );
        let listed: Vec<Uuid> = again.list(&index()).await.unwrap().iter().map(|j| j.id).collect();
        assert_eq!(listed, vec![queued.id, done.id, running.id], "newest first");
        // and it was stored so: a third start sees the same
        let third = Jobs::load(storage.clone(), &[index()], &fleet(&storage))
            .await
            .unwrap();
        assert_eq!(
            third
                .get(&running.id.to_string(), &[index()])
                .await
                .unwrap()
                .state,
            JobState::Failed
        );
    }

    #[tokio::test]
    async fn a_live_owners_jobs_are_left_alone_read_from_the_store_and_cancelled_by_marker() {
        let storage = Storage::in_memory();
        let (fa, fb) = (fleet(&storage), fleet(&storage));
        fa.heartbeat(Default::default()).await.unwrap();
        let a = Jobs::load(storage.clone(), &[index()], &fa).await.unwrap();
        let ctl = RunControl::default();
        let job = a
            .create(&index(), JobKind::Autotune, 4, ctl.clone())
            .await
            .unwrap();
        a.update(job.id, |j| j.state = JobState::Running).await.unwrap();
        let id = job.id.to_string();

        let b = Jobs::load(storage.clone(), &[index()], &fb).await.unwrap();
        let seen = b.get(&id, &[index()]).await.unwrap();
        assert_eq!(
            (seen.state, seen.owner),
            (JobState::Running, Some(fa.id())),
            "a live owner's job is not reaped"
        );
        assert_eq!(b.list(&index()).await.unwrap().len(), 1);
        // a cancel on the other instance reaches the owner through the store
        assert_eq!(b.cancel(&id, &[index()]).await.unwrap().state, JobState::Running);
        assert!(!ctl.cancel.is_cancelled());
        assert_eq!(a.take_cancel_markers().await.unwrap(), 1);
        assert!(ctl.cancel.is_cancelled());
        assert_eq!(
            a.take_cancel_markers().await.unwrap(),
            0,
            "a marker is acted on once"
        );
        // the owner dies (its record goes): the next reap interrupts the job
        fa.leave().await.unwrap();
        assert_eq!(b.reap(&[index()], &fb).await.unwrap(), 1);
        let j = b.get(&id, &[index()]).await.unwrap();
        assert_eq!(j.error.map(|e| e.code).as_deref(), Some("interrupted"));
    }

    #[test]
    fn both_results_round_trip_through_their_stored_form() {
        let activation = JobResult::Activate {
            index_name: index(),
            record: ActivationRecord {
                generation: 3,
                config: crate::params::HnswConfig::DEFAULT,
                activated_at: Utc::now(),
                vectors: 10,
                build_time_secs: 0.5,
                loaded_from_store: true,
                memory_bytes: 100,
                deleted: 0,
                folded_from: Some(8),
                lineage: Some(2),
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
            best_recall: Some(0.9),
            bounds: Some(crate::params::Bounds::raised(800, 600, 64).unwrap()),
            sample: Some(crate::autotune::transfer::SampleReport {
                rows: 100,
                of_rows: 1000,
                chosen_by: "auto".into(),
                trials: 3,
                builds: 2,
                engine: crate::params::Engine::NativeSq8,
                full_builds: 1,
                leading: vec![crate::params::HnswConfig::DEFAULT],
                transfer: Some(crate::autotune::transfer::TransferError {
                    config: crate::params::HnswConfig::DEFAULT,
                    sample_recall: 0.97,
                    full_recall: 0.94,
                }),
                secs: 1.5,
                full_build_forecast_secs: Some(100.0),
                full_build_secs: Some(110.0),
            }),
            builds_elsewhere: 1,
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
