//! The one API error: every domain error becomes a status and a JSON body here, once.
//!
//! Matches are exhaustive (no `_` arm), so a new domain error cannot reach a client
//! without someone deciding its status. 5xx bodies say little; the log says everything.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::autotune::AutotuneError;
use crate::harness::HarnessError;
use crate::jobs::JobsError;
use crate::names::NameError;
use crate::promotion::PromotionError;
use crate::service::ServiceError;
use crate::storage::StorageError;
use crate::trials::TrialsError;
use crate::vectors::VectorsError;

/// An error answer: `{"error": {"code", "message"}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(code: &'static str, e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    }

    fn internal(e: &dyn std::error::Error) -> ApiError {
        let mut chain = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; see the server log",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> ApiError {
        ApiError::bad_request("invalid_name", e)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        match e {
            StorageError::AlreadyExists { .. }
            | StorageError::Backend { .. }
            | StorageError::Corrupt { .. }
            | StorageError::NewerSchema { .. }
            | StorageError::Config { .. } => ApiError::internal(&e),
        }
    }
}

impl From<VectorsError> for ApiError {
    fn from(e: VectorsError) -> ApiError {
        use VectorsError as V;
        match e {
            V::IndexNotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "index_not_found", e.to_string()),
            V::IndexExists(_) => ApiError::new(StatusCode::CONFLICT, "index_exists", e.to_string()),
            V::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "concurrent_write", e.to_string()),
            V::InvalidDims(_) => ApiError::bad_request("invalid_dims", e),
            V::InvalidMetric(_) => ApiError::bad_request("invalid_metric", e),
            V::InvalidFormat(_) => ApiError::bad_request("invalid_format", e),
            V::Binary(_) => ApiError::bad_request("invalid_binary_body", e),
            V::EmptyBatch => ApiError::bad_request("empty_batch", e),
            V::DimsMismatch { .. } => ApiError::bad_request("dimension_mismatch", e),
            V::NonFinite { .. } => ApiError::bad_request("non_finite_value", e),
            V::ZeroVector { .. } => ApiError::bad_request("zero_vector", e),
            V::InvalidId { .. } => ApiError::bad_request("invalid_id", e),
            V::DuplicateInBatch(_) | V::DuplicateStored(_) => ApiError::bad_request("duplicate_id", e),
            V::Storage(s) => s.into(),
            V::CorruptSegment { .. } | V::MissingSegment(_) | V::Task(_) => ApiError::internal(&e),
        }
    }
}

impl From<HarnessError> for ApiError {
    fn from(e: HarnessError) -> ApiError {
        use HarnessError as H;
        match e {
            H::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "harness_not_found", e.to_string()),
            H::Exists(_) => ApiError::new(StatusCode::CONFLICT, "harness_exists", e.to_string()),
            H::InvalidK(_) => ApiError::bad_request("invalid_k", e),
            H::KTooLarge { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "k_too_large", e.to_string())
            }
            H::NoQueries => ApiError::bad_request("no_queries", e),
            H::TooManyQueries { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_many_queries",
                e.to_string(),
            ),
            H::Query { .. } => ApiError::bad_request("invalid_query", e),
            H::QueryId(_) => ApiError::bad_request("invalid_query_id", e),
            H::WrongIndex { .. } => ApiError::bad_request("harness_index_mismatch", e),
            H::Vectors(v) => v.into(),
            H::Storage(s) => s.into(),
            H::Task(_) => ApiError::internal(&e),
            H::Capturing(_) => ApiError::new(StatusCode::CONFLICT, "harness_capturing", e.to_string()),
            H::NotRefreshable(..) => {
                ApiError::new(StatusCode::CONFLICT, "harness_not_refreshable", e.to_string())
            }
            H::InvalidSampleRate(_) => ApiError::bad_request("invalid_sample_rate", e),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        use ServiceError as S;
        match e {
            S::Vectors(v) => v.into(),
            S::Harness(h) => h.into(),
            S::Storage(s) => s.into(),
            S::Config(_) => ApiError::bad_request("invalid_config", e),
            S::Trials(t) => t.into(),
            S::Promotion(p) => p.into(),
            S::Autotune(a) => a.into(),
            S::HarnessQuery(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_harness", e.to_string())
            }
            S::NotActive(_) => ApiError::new(StatusCode::CONFLICT, "not_active", e.to_string()),
            S::EmptyIndex(_) => ApiError::new(StatusCode::CONFLICT, "index_empty", e.to_string()),
            S::Query(_) => ApiError::bad_request("invalid_query", e),
            S::InvalidK(_) => ApiError::bad_request("invalid_k", e),
            S::ActivationConflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "concurrent_write", e.to_string())
            }
            S::Task(_) => ApiError::internal(&e),
            S::Jobs(j) => j.into(),
            S::Agent(_) => ApiError::bad_request("invalid_agent_config", e),
            S::Name(n) => n.into(),
            S::Cancelled => ApiError::new(StatusCode::CONFLICT, "cancelled", e.to_string()),
            S::Monitor(_) => ApiError::bad_request("invalid_monitor_settings", e),
        }
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> ApiError {
        match e {
            JobsError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "job_not_found", e.to_string()),
            JobsError::Storage(s) => s.into(),
        }
    }
}

impl From<TrialsError> for ApiError {
    fn from(e: TrialsError) -> ApiError {
        match e {
            TrialsError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "trial_not_found", e.to_string())
            }
            TrialsError::Storage(s) => s.into(),
            TrialsError::InvalidAxes(_) => ApiError::bad_request("invalid_axes", e),
        }
    }
}

impl From<PromotionError> for ApiError {
    fn from(e: PromotionError) -> ApiError {
        match e {
            PromotionError::NothingToRollBack(_) => {
                ApiError::new(StatusCode::CONFLICT, "nothing_to_roll_back", e.to_string())
            }
            PromotionError::TextTooLong { .. } => ApiError::bad_request("invalid_text", e),
            PromotionError::Contended(_) => {
                ApiError::new(StatusCode::CONFLICT, "concurrent_write", e.to_string())
            }
            PromotionError::Storage(s) => s.into(),
        }
    }
}

impl From<AutotuneError> for ApiError {
    fn from(e: AutotuneError) -> ApiError {
        match e {
            AutotuneError::NoUsableConfig { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_usable_config",
                e.to_string(),
            ),
            AutotuneError::Running(_) => {
                ApiError::new(StatusCode::CONFLICT, "autotune_running", e.to_string())
            }
            AutotuneError::InvalidMinRecall(_) => ApiError::bad_request("invalid_min_recall", e),
            AutotuneError::InvalidField { .. } => ApiError::bad_request("invalid_autotune_request", e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", r.body_text());
        }
        let code = match &r {
            JsonRejection::JsonDataError(_) => "invalid_body",
            JsonRejection::JsonSyntaxError(_) => "invalid_json",
            JsonRejection::MissingJsonContentType(_) => "invalid_content_type",
            _ => "invalid_body",
        };
        ApiError::bad_request(code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::bad_request("invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request("invalid_query_string", r.body_text())
    }
}
