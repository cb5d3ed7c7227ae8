//! Settings, layered: embedded defaults < config file < `VECTUNE_*` environment < flags.
//!
//! `config/default.toml` documents every key with its default; a unit test keeps it equal
//! to [`Settings::default`], so the documentation cannot drift from the code.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::hnsw::{available_threads, BuildOptions, Engine};
use crate::storage::S3Settings;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}")]
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
    /// `native` (vectune's own builder) or `hnsw_rs` (the reference, serial only).
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
}

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

impl Settings {
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
                reason: "native or hnsw_rs",
            })?;
        }
        if let Some(v) = parse_env(env, "VECTUNE_MONITOR_SAMPLE_RATE", "a share between 0 and 1")? {
            s.monitor.sample_rate = v;
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
        if let Some(v) = &flags.bind {
            s.server.bind = v.clone();
        }
        if let Some(v) = &flags.store {
            s.store.url = v.clone();
        }
        s.monitor.settings()?;
        if s.build.concurrency == 0 {
            return Err(ConfigError::Invalid {
                key: "build.concurrency",
                reason: "must be at least 1",
            });
        }
        if s.limits.max_body_bytes == 0 || s.limits.max_binary_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "limits",
                reason: "body limits must be positive",
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
        let flags = Overrides {
            bind: Some("127.0.0.1:3".into()),
            store: Some("memory://".into()),
        };
        let s = Settings::load(Some(&f), &env, &flags).unwrap();
        assert_eq!(
            (s.server.bind.as_str(), s.store.url.as_str()),
            ("127.0.0.1:3", "memory://")
        );
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
