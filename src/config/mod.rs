//! Settings, layered: embedded defaults < config file < `VECTUNE_*` environment < flags.
//!
//! `config/default.toml` documents every key with its default; a unit test keeps it equal
//! to [`Settings::default`], so the documentation cannot drift from the code.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hnsw::{available_threads, BuildOptions};
use crate::params::Engine;
use crate::storage::S3Settings;

mod env;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file (or a token file) cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("config file {path} is invalid")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// An environment variable has a value of the wrong type.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A value is out of range.
    #[error("setting {key} is invalid: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// All settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The HTTP listener.
    pub server: ServerSettings,
    /// Where state lives.
    pub store: StoreSettings,
    /// Request limits.
    pub limits: Limits,
    /// Graph builds.
    pub build: BuildSettings,
    /// The live recall monitor's defaults.
    pub monitor: MonitorDefaults,
    /// Bearer tokens; none configured means the API is open.
    pub auth: AuthSettings,
    /// The log's shape.
    pub log: LogSettings,
    /// Leases and the fleet of instances on one bucket.
    pub leases: LeaseSettings,
    /// The bounds of configs (requests, autotune, the agent).
    pub tuning: TuningSettings,
}

/// The bounds configs are checked against and the adaptive search moves within: the
/// seed's (the contract's) by default; a server holding indexes that need wider beams or
/// more links raises them. Each is at least the seed's bound and at most
/// [`crate::params::Bounds::CEILING`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TuningSettings {
    /// Largest `ef_search` (200..=4096).
    pub max_ef_search: u32,
    /// Largest `ef_construction` (400..=4096).
    pub max_ef_construction: u32,
    /// Largest `m` (64..=128).
    pub max_m: u32,
    /// Memory the graphs one tuning run keeps may take (least recently used dropped past
    /// it, rebuilt if needed again; at least 1 MiB). Not the autotune request's
    /// `max_memory_bytes`, which caps what a winning config may hold.
    pub max_memory_bytes: u64,
    /// Whether an autotune offers its full builds to the other live instances on the
    /// bucket and this instance builds what theirs offer (on by default; an instance alone
    /// offers nothing).
    pub fleet_builds: bool,
}

impl Default for TuningSettings {
    fn default() -> Self {
        let b = crate::params::Bounds::SEED;
        TuningSettings {
            max_ef_search: b.max_ef_search,
            max_ef_construction: b.max_ef_construction,
            max_m: b.max_m,
            max_memory_bytes: crate::autotune::tuner::RUN_GRAPH_CACHE_BYTES as u64,
            fleet_builds: true,
        }
    }
}

impl TuningSettings {
    /// The memory of a run's kept graphs (checked when the settings load).
    pub fn run_graph_bytes(&self) -> Result<usize, ConfigError> {
        usize::try_from(self.max_memory_bytes)
            .ok()
            .filter(|&b| b >= 1 << 20)
            .ok_or(ConfigError::Invalid {
                key: "tuning.max_memory_bytes",
                reason: "must be at least 1 MiB (1048576)",
            })
    }

    /// As bounds (checked when the settings load).
    pub fn bounds(&self) -> Result<crate::params::Bounds, ConfigError> {
        crate::params::Bounds::raised(self.max_ef_construction, self.max_ef_search, self.max_m).map_err(|e| {
            ConfigError::Invalid {
                key: match e.field {
                    "max_ef_search" => "tuning.max_ef_search",
                    "max_ef_construction" => "tuning.max_ef_construction",
                    _ => "tuning.max_m",
                },
                reason: "must be at least the seed's bound (ef_search 200, ef_construction 400, m 64) \
                         and at most the ceiling (4096, 4096, 128)",
            }
        })
    }
}

/// Leases, liveness and how often an instance looks at what the others wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseSettings {
    /// Seconds a lease (autotune claim, agent, an instance's liveness) lasts unless renewed
    /// (every third of it). A crashed holder's autotune claim, agent and jobs are freed this
    /// long after its last renewal. Env `VECTUNE_LEASE_TTL_SECS`.
    pub ttl_secs: f64,
    /// Seconds between looks at the store for other instances' writes: new, grown or
    /// deleted indexes, activations to serve, agent settings. The bound within which another
    /// instance's writes show here. Env `VECTUNE_FLEET_SYNC_SECS`.
    pub sync_secs: f64,
    /// Whether a holder on this machine (same boot, same pid namespace) whose process is
    /// gone counts as dead at once instead of after the TTL: a restart then takes over its
    /// predecessor's jobs and leases immediately. Env `VECTUNE_DETECT_LOCAL_DEAD`.
    pub detect_local_dead: bool,
}

impl Default for LeaseSettings {
    fn default() -> LeaseSettings {
        LeaseSettings {
            ttl_secs: crate::fleet::DEFAULT_TTL.as_secs_f64(),
            sync_secs: 2.0,
            detect_local_dead: true,
        }
    }
}

impl LeaseSettings {
    /// The fleet's options.
    pub fn options(&self) -> crate::fleet::FleetOptions {
        crate::fleet::FleetOptions {
            ttl: std::time::Duration::from_secs_f64(self.ttl_secs),
            sync_interval: std::time::Duration::from_secs_f64(self.sync_secs),
            detect_local_dead: self.detect_local_dead,
        }
    }
}

/// A secret string: shown as `***` in `Debug`, so settings can be logged.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Bearer tokens. With `token` set every route but `/health`, `/ready`, `/openapi.json`
/// and `/docs` needs `Authorization: Bearer <token>`; `read_token` may call every `GET`,
/// searches and `/metrics`, nothing that writes. A `*_file` names a file holding the token
/// (trailing newline ignored), so it stays out of process listings and config files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// The admin token: may call everything. Env `VECTUNE_API_TOKEN`.
    pub token: Option<Secret>,
    /// A file holding the admin token.
    pub token_file: Option<String>,
    /// The read-only token. Env `VECTUNE_READ_TOKEN`.
    pub read_token: Option<Secret>,
    /// A file holding the read-only token.
    pub read_token_file: Option<String>,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: one coloured line per event.
    #[default]
    Text,
    /// For machines: one JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// The log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` (default) or `json`. Env `VECTUNE_LOG_FORMAT`, flag `--log-format`.
    pub format: LogFormat,
}

/// Reads a token file: its first line, trimmed.
fn token_from_file(path: &str) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    Ok(Secret::new(text.lines().next().unwrap_or("").trim()))
}

/// A token is one run of visible ASCII (it travels in a header), 8 to 512 bytes.
fn check_token(key: &'static str, t: &Secret) -> Result<(), ConfigError> {
    let s = t.expose();
    if !(8..=512).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            key,
            reason: "a token must be 8 to 512 visible ASCII characters (no spaces)",
        });
    }
    Ok(())
}

/// The live recall monitor's defaults, for indexes that set none
/// (`PUT /vectors/indexes/{index}/monitor` sets an index's own).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorDefaults {
    /// Share of served searches re-run exactly, 0..=1.
    pub sample_rate: f64,
    /// Samples the live figures are computed over.
    pub window: usize,
}

impl Default for MonitorDefaults {
    fn default() -> Self {
        let d = crate::monitor::MonitorSettings::default();
        MonitorDefaults {
            sample_rate: d.sample_rate.get(),
            window: d.window,
        }
    }
}

impl MonitorDefaults {
    /// As the monitor's settings (checked when the settings load).
    pub fn settings(&self) -> Result<crate::monitor::MonitorSettings, ConfigError> {
        let d = crate::monitor::MonitorSettings::default();
        crate::monitor::MonitorSettings::parse(
            d,
            Some(self.sample_rate),
            Some(self.window.min(i64::MAX as usize) as i64),
        )
        .map_err(|_| ConfigError::Invalid {
            key: "monitor",
            reason: "sample_rate must be in 0..=1 and window in 1..=1000000",
        })
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to bind, `host:port` (`port` 0 picks a free one).
    pub bind: String,
}

/// Where state lives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Store URL: a path, `file:///abs`, `memory://` or `s3://bucket/prefix`.
    pub url: String,
    /// Extra settings for S3-compatible stores.
    pub s3: S3Settings,
}

/// Request limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest JSON request body, bytes; larger is `413`.
    pub max_body_bytes: usize,
    /// Largest binary (fvecs/npy) request body, bytes; larger is `413`.
    pub max_binary_body_bytes: usize,
    /// Deadline of a request that starts no heavy work, seconds; past it the answer is
    /// `503` `timeout`. Routes that build, measure or tune are bounded by the queue instead.
    pub request_timeout_secs: f64,
    /// Heavy work (builds, trials, ground truth, autotunes, activations) admitted at once,
    /// queued or running; one more is `503` `overloaded` with `Retry-After`. Raising it
    /// lets more work wait for build permits (memory: one vector set per run).
    pub max_queued_jobs: usize,
    /// Bytes of binary (fvecs / npy) uploads admitted at once, each counted at its declared
    /// length (or `max_binary_body_bytes` when it declares none); one more is `503`
    /// `overloaded` with `Retry-After`, nothing read or stored. An upload is held in memory
    /// while it is parsed and appended, so this bounds what concurrent uploads can take.
    pub max_ingest_bytes_in_flight: u64,
}

/// Graph builds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BuildSettings {
    /// Builds (activations and trials) running at once. Each native build already uses
    /// `threads` cores, so more than one mostly makes builds wait on each other's cores.
    pub concurrency: usize,
    /// Threads one build uses; 0 means every core. The native builder gives the same graph
    /// at any count, so this only trades build time against cores left for searches.
    pub threads: usize,
    /// `native` (vectune's own builder), `native_sq8` (the same builder measuring on SQ8
    /// codes: faster where rows miss the cache, a slightly different graph) or `hnsw_rs`
    /// (the reference, serial only).
    pub engine: Engine,
}

impl BuildSettings {
    /// What a build is given: the engine, and the thread count with 0 resolved.
    pub fn options(&self) -> BuildOptions {
        BuildOptions {
            engine: self.engine,
            threads: if self.threads == 0 {
                available_threads()
            } else {
                self.threads
            },
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: "127.0.0.1:8080".into(),
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: "./data".into(),
            s3: S3Settings::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 << 20,
            max_binary_body_bytes: 1 << 30,
            request_timeout_secs: crate::http::DEFAULT_REQUEST_TIMEOUT.as_secs_f64(),
            max_queued_jobs: crate::jobs::DEFAULT_MAX_QUEUED_JOBS,
            max_ingest_bytes_in_flight: 2 << 30,
        }
    }
}

impl Default for BuildSettings {
    fn default() -> Self {
        BuildSettings {
            concurrency: 1,
            threads: 0,
            engine: Engine::Native,
        }
    }
}

/// Values given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--bind`.
    pub bind: Option<String>,
    /// `--store`.
    pub store: Option<String>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
}

impl Settings {
    /// Reads token files into the tokens and checks both: a token given twice (value and
    /// file), an unusable one, or a read token equal to the admin token is refused.
    fn resolve_tokens(&mut self) -> Result<(), ConfigError> {
        let a = &mut self.auth;
        for (token, file, key) in [
            (&mut a.token, &a.token_file, "auth.token"),
            (&mut a.read_token, &a.read_token_file, "auth.read_token"),
        ] {
            if let Some(path) = file {
                if token.is_some() {
                    return Err(ConfigError::Invalid {
                        key,
                        reason: "set either the token or its file, not both",
                    });
                }
                *token = Some(token_from_file(path)?);
            }
            if let Some(t) = token.as_ref() {
                check_token(key, t)?;
            }
        }
        match (&a.token, &a.read_token) {
            (None, Some(_)) => Err(ConfigError::Invalid {
                key: "auth.read_token",
                reason: "a read-only token needs an admin token (auth.token) beside it",
            }),
            (Some(t), Some(r)) if t == r => Err(ConfigError::Invalid {
                key: "auth.read_token",
                reason: "must differ from the admin token",
            }),
            _ => Ok(()),
        }
    }

    /// Loads settings: the file (if any) over the defaults, then the environment, then
    /// the flags. `env` is injected so tests need not touch the process environment.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Settings, ConfigError> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source: Box::new(source),
                })?
            }
            None => Settings::default(),
        };
        env::apply(&mut s, env)?;
        if let Some(v) = &flags.bind {
            s.server.bind = v.clone();
        }
        if let Some(v) = &flags.store {
            s.store.url = v.clone();
        }
        if let Some(v) = flags.log_format {
            s.log.format = v;
        }
        s.resolve_tokens()?;
        s.monitor.settings()?;
        s.tuning.bounds()?;
        s.tuning.run_graph_bytes()?;
        if s.build.concurrency == 0 {
            return Err(ConfigError::Invalid {
                key: "build.concurrency",
                reason: "must be at least 1",
            });
        }
        if !(s.limits.request_timeout_secs > 0.0 && s.limits.request_timeout_secs <= 86_400.0) {
            return Err(ConfigError::Invalid {
                key: "limits.request_timeout_secs",
                reason: "must be above 0 and at most 86400",
            });
        }
        if !(s.leases.ttl_secs >= 1.0 && s.leases.ttl_secs <= 3600.0) {
            return Err(ConfigError::Invalid {
                key: "leases.ttl_secs",
                reason: "must be between 1 and 3600",
            });
        }
        if !(s.leases.sync_secs >= 0.1 && s.leases.sync_secs <= s.leases.ttl_secs) {
            return Err(ConfigError::Invalid {
                key: "leases.sync_secs",
                reason: "must be at least 0.1 and at most leases.ttl_secs",
            });
        }
        if s.limits.max_queued_jobs == 0 {
            return Err(ConfigError::Invalid {
                key: "limits.max_queued_jobs",
                reason: "must be at least 1",
            });
        }
        if s.limits.max_body_bytes == 0 || s.limits.max_binary_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "limits",
                reason: "body limits must be positive",
            });
        }
        if s.limits.max_ingest_bytes_in_flight < s.limits.max_binary_body_bytes as u64 {
            return Err(ConfigError::Invalid {
                key: "limits.max_ingest_bytes_in_flight",
                reason: "must be at least limits.max_binary_body_bytes (else the largest upload is never admitted)",
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn tokens_come_from_env_or_file_and_are_checked() {
        let none = Overrides::default();
        let s = Settings::load(None, &env_of(&[("VECTUNE_API_TOKEN", "admin-secret-1")]), &none).unwrap();
        assert_eq!(s.auth.token.as_ref().map(Secret::expose), Some("admin-secret-1"));
        assert!(
            !format!("{s:?}").contains("admin-secret-1"),
            "Debug must not show a token"
        );

        let dir = tempfile::tempdir().unwrap();
        let tf = dir.path().join("token");
        std::fs::write(&tf, "file-secret-22\n").unwrap();
        let toml_file = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let tf_shown = tf.display().to_string();
        let cf = toml_file(
            "c.toml",
            format!("[auth]\ntoken_file = {tf_shown:?}\nread_token = \"reader-secret-3\"\n"),
        );
        let s = Settings::load(Some(&cf), &env_of(&[]), &none).unwrap();
        assert_eq!(s.auth.token.as_ref().map(Secret::expose), Some("file-secret-22"));
        assert_eq!(
            s.auth.read_token.as_ref().map(Secret::expose),
            Some("reader-secret-3")
        );

        for bad in [
            vec![("VECTUNE_API_TOKEN", "short")],
            vec![("VECTUNE_API_TOKEN", "has a space in it")],
            vec![("VECTUNE_READ_TOKEN", "reader-only-token")],
            vec![
                ("VECTUNE_API_TOKEN", "same-token-1"),
                ("VECTUNE_READ_TOKEN", "same-token-1"),
            ],
            vec![("VECTUNE_REQUEST_TIMEOUT_SECS", "0")],
            vec![("VECTUNE_MAX_QUEUED_JOBS", "0")],
            vec![("VECTUNE_LOG_FORMAT", "xml")],
        ] {
            assert!(Settings::load(None, &env_of(&bad), &none).is_err(), "{bad:?}");
        }
        // a token given as a value and as a file is ambiguous
        let both = toml_file(
            "both.toml",
            format!("[auth]\ntoken = \"value-token-1\"\ntoken_file = {tf_shown:?}\n"),
        );
        assert!(Settings::load(Some(&both), &env_of(&[]), &none).is_err());
        let missing = toml_file(
            "missing.toml",
            "[auth]\ntoken_file = \"/nonexistent/vectune-token\"\n".to_string(),
        );
        assert!(matches!(
            Settings::load(Some(&missing), &env_of(&[]), &none),
            Err(ConfigError::Read { .. })
        ));
    }

    /// The bounds settings layer like the others, become the service's bounds, and a value
    /// below the seed's or past the ceiling stops the start with the key named.
    #[test]
    fn tuning_bounds_are_raised_never_lowered() {
        let none = Overrides::default();
        let s = Settings::load(None, &env_of(&[]), &none).unwrap();
        assert_eq!(s.tuning.bounds().unwrap(), crate::params::Bounds::SEED);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(&f, "[tuning]\nmax_ef_search = 800\nmax_m = 96\n").unwrap();
        let s = Settings::load(
            Some(&f),
            &env_of(&[("VECTUNE_TUNING_MAX_EF_CONSTRUCTION", "1000")]),
            &none,
        )
        .unwrap();
        assert_eq!(
            s.tuning.bounds().unwrap(),
            crate::params::Bounds::raised(1000, 800, 96).unwrap()
        );
        let over = Settings::load(
            Some(&f),
            &env_of(&[("VECTUNE_TUNING_MAX_EF_SEARCH", "199")]),
            &none,
        );
        for (bad, key) in [
            (("VECTUNE_TUNING_MAX_EF_SEARCH", "199"), "tuning.max_ef_search"),
            (("VECTUNE_TUNING_MAX_EF_SEARCH", "4097"), "tuning.max_ef_search"),
            (
                ("VECTUNE_TUNING_MAX_EF_CONSTRUCTION", "100"),
                "tuning.max_ef_construction",
            ),
            (("VECTUNE_TUNING_MAX_M", "129"), "tuning.max_m"),
        ] {
            match Settings::load(None, &env_of(&[bad]), &none) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(over.is_err());
        let s = Settings::load(
            None,
            &env_of(&[("VECTUNE_TUNING_MAX_MEMORY_BYTES", "67108864")]),
            &none,
        )
        .unwrap();
        assert_eq!(s.tuning.run_graph_bytes().unwrap(), 64 << 20);
        match Settings::load(
            None,
            &env_of(&[("VECTUNE_TUNING_MAX_MEMORY_BYTES", "1000")]),
            &none,
        ) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "tuning.max_memory_bytes"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Settings::load(None, &env_of(&[("VECTUNE_TUNING_MAX_M", "many")]), &none),
            Err(ConfigError::Env { .. })
        ));
        // builds over the fleet: on unless switched off; anything but a bool is refused
        assert!(
            Settings::load(None, &env_of(&[]), &none)
                .unwrap()
                .tuning
                .fleet_builds
        );
        let off = Settings::load(None, &env_of(&[("VECTUNE_TUNING_FLEET_BUILDS", "false")]), &none);
        assert!(!off.unwrap().tuning.fleet_builds);
        assert!(matches!(
            Settings::load(
                None,
                &env_of(&[("VECTUNE_TUNING_FLEET_BUILDS", "sometimes")]),
                &none
            ),
            Err(ConfigError::Env { .. })
        ));
    }

    #[test]
    fn documented_defaults_match_the_code() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let s = Settings::load(Some(&path), &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn layers_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[server]\nbind = \"0.0.0.0:1\"\n[store]\nurl = \"/file\"\n[build]\nconcurrency = 3\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(
            (s.server.bind.as_str(), s.store.url.as_str(), s.build.concurrency),
            ("0.0.0.0:1", "/file", 3)
        );
        let env = env_of(&[
            ("VECTUNE_BIND", "1.1.1.1:2"),
            ("VECTUNE_STORE", "/env"),
            ("VECTUNE_MAX_BINARY_BODY_BYTES", "10"),
        ]);
        let s = Settings::load(Some(&f), &env, &Overrides::default()).unwrap();
        assert_eq!(
            (s.server.bind.as_str(), s.store.url.as_str()),
            ("1.1.1.1:2", "/env")
        );
        assert_eq!(s.limits.max_binary_body_bytes, 10);
        let env2 = env_of(&[
            ("VECTUNE_BUILD_ENGINE", "hnsw_rs"),
            ("VECTUNE_BUILD_THREADS", "3"),
        ]);
        let s2 = Settings::load(None, &env2, &Overrides::default()).unwrap();
        assert_eq!(
            s2.build.options(),
            BuildOptions {
                engine: Engine::HnswRs,
                threads: 3
            }
        );
        assert_eq!(Settings::default().build.options().threads, available_threads());
        let sq8 = env_of(&[("VECTUNE_BUILD_ENGINE", "native_sq8")]);
        let s3 = Settings::load(None, &sq8, &Overrides::default()).unwrap();
        assert_eq!(s3.build.options().engine, Engine::NativeSq8);
        let toml = dir.path().join("sq8.toml");
        std::fs::write(&toml, "[build]\nengine = \"native_sq8\"\n").unwrap();
        let s4 = Settings::load(Some(&toml), &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(s4.build.engine, Engine::NativeSq8);
        let bad = env_of(&[("VECTUNE_BUILD_ENGINE", "sq8")]);
        assert!(Settings::load(None, &bad, &Overrides::default()).is_err());
        let flags = Overrides {
            bind: Some("127.0.0.1:3".into()),
            store: Some("memory://".into()),
            log_format: Some(LogFormat::Json),
        };
        let s = Settings::load(Some(&f), &env, &flags).unwrap();
        assert_eq!(
            (s.server.bind.as_str(), s.store.url.as_str()),
            ("127.0.0.1:3", "memory://")
        );
    }

    #[test]
    fn ingest_bytes_in_flight_layer_and_must_hold_the_largest_body() {
        assert_eq!(Settings::default().limits.max_ingest_bytes_in_flight, 2 << 30);
        let env = env_of(&[("VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT", "3000000000")]);
        let s = Settings::load(None, &env, &Overrides::default()).unwrap();
        assert_eq!(s.limits.max_ingest_bytes_in_flight, 3_000_000_000);
        // below one binary body: the largest upload could never be admitted
        let small = env_of(&[("VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT", "1000")]);
        let e = Settings::load(None, &small, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("max_ingest_bytes_in_flight"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[limits]\nmax_binary_body_bytes = 100\nmax_ingest_bytes_in_flight = 250\n",
        )
        .unwrap();
        let s = Settings::load(Some(&f), &env_of(&[]), &Overrides::default()).unwrap();
        assert_eq!(s.limits.max_ingest_bytes_in_flight, 250);
        let bad = env_of(&[("VECTUNE_MAX_INGEST_BYTES_IN_FLIGHT", "lots")]);
        assert!(Settings::load(None, &bad, &Overrides::default()).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Settings::load(
            None,
            &env_of(&[("VECTUNE_MAX_BODY_BYTES", "lots")]),
            &Overrides::default()
        )
        .is_err());
        assert!(Settings::load(
            None,
            &env_of(&[("VECTUNE_BUILD_CONCURRENCY", "0")]),
            &Overrides::default()
        )
        .is_err());
        assert!(Settings::load(
            None,
            &env_of(&[("VECTUNE_BUILD_ENGINE", "faiss")]),
            &Overrides::default()
        )
        .is_err());
        for rate in ["1.5", "-0.1", "often"] {
            assert!(Settings::load(
                None,
                &env_of(&[("VECTUNE_MONITOR_SAMPLE_RATE", rate)]),
                &Overrides::default()
            )
            .is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[server]\nbindd = \"x\"\n").unwrap();
        assert!(matches!(
            Settings::load(Some(&f), &env_of(&[]), &Overrides::default()),
            Err(ConfigError::Parse { .. })
        ));
    }
}
