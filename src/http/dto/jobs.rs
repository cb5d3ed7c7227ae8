//! Jobs: async autotunes and activations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{wire_enum, ActivationOut, AutotuneOut};
use crate::jobs::{Job, JobResult};

wire_enum! {
    /// Where a job is.
    JobStateOut from crate::jobs::JobState { Queued, Running, Succeeded, Failed, Cancelled }
}

wire_enum! {
    /// What a job does.
    JobKindOut from crate::jobs::JobKind { Autotune, Activate }
}

/// Steps finished of those planned.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressOut {
    /// Finished (trials journaled, or the activation).
    pub done: usize,
    /// Planned: the grid's configs, `max_trials` for adaptive (which may end below), 1 for
    /// an activation.
    pub total: usize,
    /// The graph build under way, when one is: rows inserted of its rows (counted at the
    /// end of each of its rounds, at most 2 % of the rows each). A job cancelled during a
    /// build shows where the build stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildStepOut>,
}

/// Rows a build has inserted, of its rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuildStepOut {
    /// Inserted so far.
    pub done: usize,
    /// The build's rows.
    pub total: usize,
}

/// Why a job failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobErrorOut {
    /// As in the API's error bodies (`interrupted` when its process stopped).
    pub code: String,
    /// For humans.
    pub message: String,
}

/// What a succeeded job answers: what the sync call would have.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum JobResultOut {
    /// An autotune's result.
    Autotune(Box<AutotuneOut>),
    /// An activation's.
    Activate(ActivationOut),
}

impl From<&JobResult> for JobResultOut {
    fn from(r: &JobResult) -> Self {
        match r {
            JobResult::Autotune(a) => JobResultOut::Autotune(Box::new(AutotuneOut::from(&**a))),
            JobResult::Activate { index_name, record } => {
                JobResultOut::Activate(ActivationOut::of(index_name.as_str(), record))
            }
        }
    }
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobOut {
    /// UUIDv7.
    pub id: Uuid,
    /// What it does.
    pub kind: JobKindOut,
    /// The index.
    pub index_name: String,
    /// Where it is.
    pub state: JobStateOut,
    /// Steps done of planned.
    pub progress: ProgressOut,
    /// Accepted at.
    pub created_at: DateTime<Utc>,
    /// Started at.
    pub started_at: Option<DateTime<Utc>>,
    /// Ended at.
    pub finished_at: Option<DateTime<Utc>>,
    /// The result, once succeeded.
    pub result: Option<JobResultOut>,
    /// The error, once failed.
    pub error: Option<JobErrorOut>,
    /// The instance that runs (or ran) it; null for records of older versions.
    pub instance: Option<Uuid>,
}

impl From<&Job> for JobOut {
    fn from(j: &Job) -> Self {
        JobOut {
            id: j.id,
            kind: j.kind.into(),
            index_name: j.index_name.to_string(),
            state: j.state.into(),
            progress: ProgressOut {
                done: j.progress.done,
                total: j.progress.total,
                build: j.progress.build.map(|b| BuildStepOut {
                    done: b.done,
                    total: b.total,
                }),
            },
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            result: j.result.as_ref().map(JobResultOut::from),
            error: j.error.as_ref().map(|e| JobErrorOut {
                code: e.code.clone(),
                message: e.message.clone(),
            }),
            instance: j.owner,
        }
    }
}

/// `202` answer of an async autotune or activation.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobAccepted {
    /// The job.
    pub job_id: Uuid,
    /// Where to poll it: `/vectors/jobs/{job_id}`.
    pub status_url: String,
}

impl JobAccepted {
    /// The 202 body of `job`.
    pub fn of(job: &Job) -> JobAccepted {
        JobAccepted {
            job_id: job.id,
            status_url: format!("/vectors/jobs/{}", job.id),
        }
    }
}

/// `?index=` of the job listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsParams {
    /// The index whose jobs to list.
    pub index: String,
}

/// `GET /vectors/jobs?index=`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<JobOut>,
}
