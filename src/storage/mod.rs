//! The object-store layer: one `Arc<dyn ObjectStore>` behind typed helpers.
//!
//! Everything vectune keeps lives here, on local disk by default or in an S3-compatible
//! bucket shared by several instances. The helpers encode the few write patterns the rest
//! of the code is allowed to use: write-once objects (`PutMode::Create`, so concurrent
//! writers cannot clobber each other and "the highest version wins" needs no
//! read-modify-write), whole-object reads, listings and prefix deletes. Local writes are
//! fsynced (file and directory) before they return, so an answered request survives a
//! crash or power loss, not only a `kill -9`.

pub mod keys;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The schema version written into every stored JSON object.
pub const SCHEMA_VERSION: u32 = 1;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A write-once object exists already (another writer got there first).
    #[error("object {key} already exists")]
    AlreadyExists {
        /// The contested key.
        key: String,
    },
    /// The backend failed.
    #[error("object store failed on {key}")]
    Backend {
        /// The key being read or written.
        key: String,
        /// What the backend said.
        #[source]
        source: object_store::Error,
    },
    /// A stored object does not decode.
    #[error("stored object {key} is corrupt")]
    Corrupt {
        /// The unreadable key.
        key: String,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
    /// A stored object was written by a newer vectune.
    #[error("stored object {key} has schema_version {found}, this build reads up to {SCHEMA_VERSION}")]
    NewerSchema {
        /// The key.
        key: String,
        /// Its schema version.
        found: u32,
    },
    /// The store URL or its settings are unusable.
    #[error("store {url:?}: {reason}")]
    Config {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl crate::error::Classified for StorageError {
    /// Every storage failure is the server's fault: a client cannot make the store fail.
    fn classify(&self) -> crate::error::Class {
        match self {
            StorageError::AlreadyExists { .. }
            | StorageError::Backend { .. }
            | StorageError::Corrupt { .. }
            | StorageError::NewerSchema { .. }
            | StorageError::Config { .. } => crate::error::Class::INTERNAL,
        }
    }
}

/// Result of the storage layer.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Settings for S3-compatible stores beyond what `AWS_*` variables give.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible server (e.g. `http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// Region (S3-compatible servers usually ignore it).
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (local test servers).
    pub allow_http: Option<bool>,
    /// Access key id, when not taken from `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret key, when not taken from `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    schema_version: u32,
    #[serde(flatten)]
    body: &'a T,
}

#[derive(Deserialize)]
struct VersionProbe {
    #[serde(default)]
    schema_version: u32,
}

/// The object store and where it lives.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    description: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

fn backend(key: &Path) -> impl FnOnce(object_store::Error) -> StorageError + '_ {
    move |source| StorageError::Backend {
        key: key.to_string(),
        source,
    }
}

/// The keys of a listing, sorted (backends list in their own order).
async fn sorted_keys(
    listing: futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>,
    prefix: &Path,
) -> Result<Vec<Path>> {
    let mut keys: Vec<Path> = listing
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(backend(prefix))?;
    keys.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    Ok(keys)
}

impl Storage {
    /// An in-process store (tests, `memory://`).
    pub fn in_memory() -> Storage {
        Storage {
            store: Arc::new(InMemory::new()),
            description: "memory://".into(),
        }
    }

    /// Wraps any object store (tests of other backends).
    pub fn from_store(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Storage {
        Storage {
            store,
            description: description.into(),
        }
    }

    /// A local directory, created if missing; writes are fsynced.
    pub fn local(dir: impl Into<PathBuf>) -> Result<Storage> {
        let dir = dir.into();
        let url = dir.display().to_string();
        let cfg = |reason: String| StorageError::Config {
            url: url.clone(),
            reason,
        };
        std::fs::create_dir_all(&dir).map_err(|e| cfg(format!("cannot create directory: {e}")))?;
        let abs = std::fs::canonicalize(&dir).map_err(|e| cfg(format!("cannot resolve directory: {e}")))?;
        let fs = LocalFileSystem::new_with_prefix(&abs)
            .map_err(|e| cfg(e.to_string()))?
            .with_fsync(true);
        Ok(Storage {
            store: Arc::new(fs),
            description: format!("file://{}", abs.display()),
        })
    }

    /// Opens a store from its URL: `memory://`, `file:///abs`, a plain path, or
    /// `s3://bucket[/prefix]` (credentials from `AWS_*`, overridable by `s3`).
    pub fn open(url: &str, s3: &S3Settings) -> Result<Storage> {
        let cfg = |reason: &str| StorageError::Config {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if url == "memory://" || url == "memory:" {
            return Ok(Storage::in_memory());
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(cfg("file:// URLs need an absolute path (file:///abs/path)"));
            }
            return Storage::local(rest);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(cfg("s3:// URLs need a bucket (s3://bucket/prefix)"));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &s3.region {
                b = b.with_region(r);
            }
            if let Some(h) = s3.allow_http {
                b = b.with_allow_http(h);
            }
            if let Some(k) = &s3.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &s3.secret_access_key {
                b = b.with_secret_access_key(k);
            }
            let s3store = b.build().map_err(|e| cfg(&e.to_string()))?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3store)
            } else {
                let p = Path::parse(prefix).map_err(|e| cfg(&e.to_string()))?;
                Arc::new(PrefixStore::new(s3store, p))
            };
            return Ok(Storage {
                store,
                description: url.to_string(),
            });
        }
        if url.contains("://") {
            return Err(cfg(
                "unsupported scheme (use a path, file://, memory:// or s3://)",
            ));
        }
        if url.is_empty() {
            return Err(cfg("empty store path"));
        }
        Storage::local(url)
    }

    /// Where the store lives, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Writes an object only if it does not exist yet.
    pub async fn put_new(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.put_new_parts(key, vec![bytes]).await
    }

    /// [`Storage::put_new`] of an object given in parts, written as one object without
    /// joining them in memory first (a segment's header, rows and ids).
    pub async fn put_new_parts(&self, key: &Path, parts: Vec<Bytes>) -> Result<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(key, PutPayload::from_iter(parts), opts).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(StorageError::AlreadyExists { key: key.to_string() })
            }
            Err(e) => Err(backend(key)(e)),
        }
    }

    /// Writes an object, replacing any existing one. Only for derived objects that can be
    /// rebuilt from others (stored graphs); state is always written with [`Storage::put_new`].
    pub async fn put_overwrite(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.store
            .put_opts(key, PutPayload::from(bytes), PutOptions::default())
            .await
            .map(|_| ())
            .map_err(backend(key))
    }

    /// Reads a whole object, `None` when it does not exist.
    pub async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(backend(key))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(key)(e)),
        }
    }

    /// `value` as the JSON stored at `key`: wrapped with the `schema_version`.
    fn encode_json<T: Serialize>(key: &Path, value: &T) -> Result<Bytes> {
        let env = Envelope {
            schema_version: SCHEMA_VERSION,
            body: value,
        };
        let bytes = serde_json::to_vec(&env).map_err(|source| StorageError::Corrupt {
            key: key.to_string(),
            source,
        })?;
        Ok(Bytes::from(bytes))
    }

    /// Serialises `value` with a `schema_version` and writes it once.
    pub async fn put_json_new<T: Serialize>(&self, key: &Path, value: &T) -> Result<()> {
        self.put_new(key, Self::encode_json(key, value)?).await
    }

    /// Serialises `value` with a `schema_version` and writes it, replacing what was there:
    /// only for records that are state, not history (job records, agent settings).
    pub async fn put_json_overwrite<T: Serialize>(&self, key: &Path, value: &T) -> Result<()> {
        self.put_overwrite(key, Self::encode_json(key, value)?).await
    }

    /// Reads and decodes a JSON object, `None` when it does not exist.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &Path) -> Result<Option<T>> {
        let Some(bytes) = self.get(key).await? else {
            return Ok(None);
        };
        let corrupt = |source| StorageError::Corrupt {
            key: key.to_string(),
            source,
        };
        let probe: VersionProbe = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if probe.schema_version > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                key: key.to_string(),
                found: probe.schema_version,
            });
        }
        serde_json::from_slice(&bytes).map(Some).map_err(corrupt)
    }

    /// Asks the store something cheap (a read of a key that need not exist): `Ok` when it
    /// answers at all, which is what readiness needs.
    pub async fn ping(&self) -> Result<()> {
        self.get(&keys::ready_probe()).await.map(|_| ())
    }

    /// Every key below `prefix`, sorted.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<Path>> {
        sorted_keys(self.store.list(Some(prefix)), prefix).await
    }

    /// The keys below `prefix` that sort after `offset`, sorted: "is there anything newer
    /// than the version I have" without listing the whole history.
    pub async fn list_after(&self, prefix: &Path, offset: &Path) -> Result<Vec<Path>> {
        sorted_keys(self.store.list_with_offset(Some(prefix), offset), prefix).await
    }

    /// The names of the "folders" directly below `prefix`, sorted.
    pub async fn list_children(&self, prefix: &Path) -> Result<Vec<String>> {
        let res = self
            .store
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(backend(prefix))?;
        let mut names: Vec<String> = res
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The highest-numbered versioned object below `prefix` (see [`keys::version_of`]).
    pub async fn latest_version(&self, prefix: &Path) -> Result<Option<(u64, Path)>> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|k| keys::version_of(&k).map(|v| (v, k)))
            .max_by_key(|(v, _)| *v))
    }

    /// Deletes one object (missing is fine).
    pub async fn delete(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(key)(e)),
        }
    }

    /// Deletes everything below `prefix`.
    pub async fn delete_prefix(&self, prefix: &Path) -> Result<()> {
        for key in self.list(prefix).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The storage contract every backend must meet; run over each backend we ship.
    use super::*;

    pub async fn run(s: &Storage) {
        let a = Path::from("t/a/00000000000000000001.json");
        let b = Path::from("t/a/00000000000000000002.json");
        let c = Path::from("t/b/x.seg");

        assert!(s.get(&a).await.unwrap().is_none(), "missing reads as None");
        s.put_json_new(&a, &serde_json::json!({"n": 1})).await.unwrap();
        let err = s
            .put_json_new(&a, &serde_json::json!({"n": 2}))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err:?}");
        let v: serde_json::Value = s.get_json(&a).await.unwrap().unwrap();
        assert_eq!(v["n"], 1, "a refused create leaves the first write");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);

        s.put_json_new(&b, &serde_json::json!({"n": 2})).await.unwrap();
        s.put_new(&c, Bytes::from_static(b"\x00\x01binary"))
            .await
            .unwrap();
        assert_eq!(s.get(&c).await.unwrap().unwrap().as_ref(), b"\x00\x01binary");

        let (v, k) = s.latest_version(&Path::from("t/a")).await.unwrap().unwrap();
        assert_eq!((v, k), (2, b.clone()));
        assert_eq!(
            s.list(&Path::from("t")).await.unwrap(),
            vec![a.clone(), b.clone(), c.clone()]
        );
        assert_eq!(s.list_children(&Path::from("t")).await.unwrap(), vec!["a", "b"]);
        assert_eq!(
            s.list_after(&Path::from("t/a"), &a).await.unwrap(),
            vec![b.clone()]
        );
        assert!(s.list_after(&Path::from("t/a"), &b).await.unwrap().is_empty());
        // prefixes match whole segments only
        assert!(s.list(&Path::from("t/a/0")).await.unwrap().is_empty());

        s.put_new(
            &Path::from("t/newer.json"),
            Bytes::from_static(b"{\"schema_version\": 99}"),
        )
        .await
        .unwrap();
        let err = s
            .get_json::<serde_json::Value>(&Path::from("t/newer.json"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::NewerSchema { found: 99, .. }),
            "{err:?}"
        );
        s.put_new(&Path::from("t/bad.json"), Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        let err = s
            .get_json::<serde_json::Value>(&Path::from("t/bad.json"))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err:?}");

        s.delete_prefix(&Path::from("t/a")).await.unwrap();
        assert!(s.get(&a).await.unwrap().is_none());
        assert!(s.get(&c).await.unwrap().is_some(), "delete_prefix keeps siblings");
        s.delete(&a).await.unwrap(); // deleting a missing object is fine
        s.delete_prefix(&Path::from("t")).await.unwrap();
        assert!(s.list(&Path::from("t")).await.unwrap().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn contract_in_memory() {
        contract::run(&Storage::in_memory()).await;
    }

    #[tokio::test]
    async fn contract_local_fs() {
        let dir = tempfile::tempdir().unwrap();
        contract::run(&Storage::open(dir.path().to_str().unwrap(), &S3Settings::default()).unwrap()).await;
        let url = format!("file://{}", dir.path().join("sub").display());
        contract::run(&Storage::open(&url, &S3Settings::default()).unwrap()).await;
    }

    /// Runs against a real S3-compatible server: `scripts/test.sh` starts one, sets
    /// `VECTUNE_TEST_S3_URL` / `VECTUNE_TEST_S3_ENDPOINT` and includes the ignored tests.
    /// A plain `cargo test` reports it as ignored, never as passed.
    #[tokio::test]
    #[ignore = "needs an S3-compatible server: scripts/test.sh starts one"]
    async fn contract_s3() {
        let url = std::env::var("VECTUNE_TEST_S3_URL").expect(
            "VECTUNE_TEST_S3_URL must name a bucket of a running S3 server (scripts/test.sh sets it)",
        );
        let s3 = S3Settings {
            endpoint: std::env::var("VECTUNE_TEST_S3_ENDPOINT").ok(),
            allow_http: Some(true),
            ..Default::default()
        };
        let url = format!("{}/contract-{}", url.trim_end_matches('/'), uuid::Uuid::now_v7());
        contract::run(&Storage::open(&url, &s3).unwrap()).await;
    }

    #[test]
    fn open_refuses_bad_urls() {
        for bad in ["gs://x", "file://relative", "s3://", ""] {
            assert!(Storage::open(bad, &S3Settings::default()).is_err(), "{bad}");
        }
        assert!(Storage::open("memory://", &S3Settings::default()).is_ok());
    }
}
