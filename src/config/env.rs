//! The `VECTUNE_*` environment layer of the settings: each variable over the file's value.

use super::{ConfigError, LogFormat, Secret, Settings};
use crate::params::Engine;

fn parse_env<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    reason: &'static str,
) -> Result<Option<T>, ConfigError> {
    match env(name) {
        None => Ok(None),
        Some(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Env { name, value, reason }),
    }
}

/// Applies every `VECTUNE_*` variable `env` holds to `s`; a value of the wrong type is an
/// error naming the variable.
pub(super) fn apply(s: &mut Settings, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    if let Some(v) = env("VECTUNE_BIND") {
        s.server.bind = v;
    }
    if let Some(v) = env("VECTUNE_STORE") {
        s.store.url = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_MAX_BODY_BYTES", "a byte count")? {
        s.limits.max_body_bytes = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_MAX_BINARY_BODY_BYTES", "a byte count")? {
        s.limits.max_binary_body_bytes = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT", "a byte count")? {
        s.limits.max_ingest_bytes_in_flight = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_BUILD_CONCURRENCY", "a positive integer")? {
        s.build.concurrency = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_BUILD_THREADS", "a thread count (0 = every core)")? {
        s.build.threads = v;
    }
    if let Some(v) = env("VECTUNE_BUILD_ENGINE") {
        s.build.engine = Engine::parse(&v).ok_or(ConfigError::Env {
            name: "VECTUNE_BUILD_ENGINE",
            value: v,
            reason: "native, native_sq8 or hnsw_rs",
        })?;
    }
    if let Some(v) = parse_env(env, "VECTUNE_MONITOR_SAMPLE_RATE", "a share between 0 and 1")? {
        s.monitor.sample_rate = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_REQUEST_TIMEOUT_SECS", "seconds")? {
        s.limits.request_timeout_secs = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_MAX_QUEUED_JOBS", "a positive integer")? {
        s.limits.max_queued_jobs = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_LEASE_TTL_SECS", "seconds")? {
        s.leases.ttl_secs = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_FLEET_SYNC_SECS", "seconds")? {
        s.leases.sync_secs = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_DETECT_LOCAL_DEAD", "true or false")? {
        s.leases.detect_local_dead = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_TUNING_MAX_EF_SEARCH", "a positive integer")? {
        s.tuning.max_ef_search = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_TUNING_MAX_EF_CONSTRUCTION", "a positive integer")? {
        s.tuning.max_ef_construction = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_TUNING_MAX_M", "a positive integer")? {
        s.tuning.max_m = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_TUNING_MAX_MEMORY_BYTES", "a byte count")? {
        s.tuning.max_memory_bytes = v;
    }
    if let Some(v) = parse_env(env, "VECTUNE_TUNING_FLEET_BUILDS", "true or false")? {
        s.tuning.fleet_builds = v;
    }
    if let Some(v) = env("VECTUNE_API_TOKEN") {
        s.auth.token = Some(Secret::new(v));
    }
    if let Some(v) = env("VECTUNE_READ_TOKEN") {
        s.auth.read_token = Some(Secret::new(v));
    }
    if let Some(v) = env("VECTUNE_LOG_FORMAT") {
        s.log.format = LogFormat::parse(v.trim()).ok_or(ConfigError::Env {
            name: "VECTUNE_LOG_FORMAT",
            value: v,
            reason: "text or json",
        })?;
    }
    if let Some(v) = env("VECTUNE_S3_ENDPOINT") {
        s.store.s3.endpoint = Some(v);
    }
    if let Some(v) = env("VECTUNE_S3_REGION") {
        s.store.s3.region = Some(v);
    }
    if let Some(v) = parse_env(env, "VECTUNE_S3_ALLOW_HTTP", "true or false")? {
        s.store.s3.allow_http = Some(v);
    }
    Ok(())
}
