//! The one helper stack of every test crate: [`Api`], one typed method per endpoint of
//! `shared/API.md` (the path built in one place), over two clients — [`TestApp`], the
//! router in-process over an in-memory store, and [`TestServer`], the real binary on a
//! loopback port — and the fixtures both use.
//!
//! Bodies stay JSON values: the tests send bad bodies on purpose, and a typed body would
//! make those impossible to write. Each crate uses a part of this.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use vectune::http::{router, RouterLimits};
use vectune::service::Vectune;
use vectune::storage::Storage;

/// The API, one method per endpoint; `request` is all a client implements.
pub trait Api {
    /// How the client reports a status (`StatusCode` in-process, `u16` over HTTP; both
    /// compare with a number).
    type Status: Copy + std::fmt::Debug + PartialEq<u16>;

    /// One request with an optional JSON body; the answer's status and JSON (or `null`).
    async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (Self::Status, Value);

    /// `GET /health`.
    async fn health(&self) -> (Self::Status, Value) {
        self.request("GET", "/health", None).await
    }
    /// `POST /vectors/indexes`.
    async fn create_index(&self, body: Value) -> (Self::Status, Value) {
        self.request("POST", "/vectors/indexes", Some(body)).await
    }
    /// `GET /vectors/indexes`.
    async fn list_indexes(&self) -> (Self::Status, Value) {
        self.request("GET", "/vectors/indexes", None).await
    }
    /// `GET /vectors/indexes/{index}`.
    async fn get_index(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/indexes/{index}"), None)
            .await
    }
    /// `DELETE /vectors/indexes/{index}`.
    async fn delete_index(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("DELETE", &format!("/vectors/indexes/{index}"), None)
            .await
    }
    /// `POST /vectors/indexes/{index}/vectors?upsert=true`.
    async fn upsert(&self, index: impl Display, body: Value) -> (Self::Status, Value) {
        self.request(
            "POST",
            &format!("/vectors/indexes/{index}/vectors?upsert=true"),
            Some(body),
        )
        .await
    }
    /// `DELETE /vectors/indexes/{index}/vectors/{id}`.
    async fn delete_vector(&self, index: impl Display, id: impl Display) -> (Self::Status, Value) {
        self.request("DELETE", &format!("/vectors/indexes/{index}/vectors/{id}"), None)
            .await
    }
    /// `POST /vectors/indexes/{index}/vectors/delete`.
    async fn delete_vectors(&self, index: impl Display, body: Value) -> (Self::Status, Value) {
        self.request(
            "POST",
            &format!("/vectors/indexes/{index}/vectors/delete"),
            Some(body),
        )
        .await
    }
    /// `GET /vectors/indexes/{index}/refresh`.
    async fn get_refresh(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/indexes/{index}/refresh"), None)
            .await
    }
    /// `PUT /vectors/indexes/{index}/refresh`.
    async fn put_refresh(&self, index: impl Display, body: Value) -> (Self::Status, Value) {
        self.request("PUT", &format!("/vectors/indexes/{index}/refresh"), Some(body))
            .await
    }
    /// `POST /vectors/indexes/{index}/vectors` (JSON batch).
    async fn append(&self, index: impl Display, body: Value) -> (Self::Status, Value) {
        self.request("POST", &format!("/vectors/indexes/{index}/vectors"), Some(body))
            .await
    }
    /// `POST /vectors/indexes/{index}/activate`.
    async fn activate(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("POST", &format!("/vectors/indexes/{index}/activate"), None)
            .await
    }
    /// `POST /vectors/indexes/{index}/activate?async=true`.
    async fn activate_async(&self, index: impl Display) -> (Self::Status, Value) {
        self.request(
            "POST",
            &format!("/vectors/indexes/{index}/activate?async=true"),
            None,
        )
        .await
    }
    /// `GET /vectors/indexes/{index}/monitor`.
    async fn get_monitor(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/indexes/{index}/monitor"), None)
            .await
    }
    /// `PUT /vectors/indexes/{index}/monitor`.
    async fn put_monitor(&self, index: impl Display, body: Value) -> (Self::Status, Value) {
        self.request("PUT", &format!("/vectors/indexes/{index}/monitor"), Some(body))
            .await
    }
    /// `POST /vectors/search/{index}`.
    async fn search(&self, index: impl Display, body: Value) -> (Self::Status, Value) {
        self.request("POST", &format!("/vectors/search/{index}"), Some(body))
            .await
    }
    /// `POST /vectors/harness` (explicit queries).
    async fn create_harness(&self, body: Value) -> (Self::Status, Value) {
        self.request("POST", "/vectors/harness", Some(body)).await
    }
    /// `POST /vectors/harness/autogen`.
    async fn autogen_harness(&self, body: Value) -> (Self::Status, Value) {
        self.request("POST", "/vectors/harness/autogen", Some(body)).await
    }
    /// `POST /vectors/harness/capture`.
    async fn capture_harness(&self, body: Value) -> (Self::Status, Value) {
        self.request("POST", "/vectors/harness/capture", Some(body)).await
    }
    /// `GET /vectors/harness/{name}`.
    async fn get_harness(&self, name: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/harness/{name}"), None)
            .await
    }
    /// `POST /vectors/hnsw/trial`.
    async fn trial(&self, body: Value) -> (Self::Status, Value) {
        self.request("POST", "/vectors/hnsw/trial", Some(body)).await
    }
    /// `GET /vectors/hnsw/trials/{index}{query}` (`query` is `""` or starts with `?`).
    async fn trials(&self, index: impl Display, query: &str) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/hnsw/trials/{index}{query}"), None)
            .await
    }
    /// `GET /vectors/hnsw/trials/{index}/{trial_id}`.
    async fn get_trial(&self, index: impl Display, trial: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/hnsw/trials/{index}/{trial}"), None)
            .await
    }
    /// `GET /vectors/hnsw/pareto/{index}{query}`.
    async fn pareto(&self, index: impl Display, query: &str) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/hnsw/pareto/{index}{query}"), None)
            .await
    }
    /// `GET /vectors/hnsw/promoted/{index}`.
    async fn promoted(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/hnsw/promoted/{index}"), None)
            .await
    }
    /// `POST /vectors/hnsw/promote/{index}/{trial_id}`.
    async fn promote(
        &self,
        index: impl Display,
        trial: impl Display,
        body: Option<Value>,
    ) -> (Self::Status, Value) {
        self.request("POST", &format!("/vectors/hnsw/promote/{index}/{trial}"), body)
            .await
    }
    /// `POST /vectors/hnsw/rollback/{index}`.
    async fn rollback(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("POST", &format!("/vectors/hnsw/rollback/{index}"), None)
            .await
    }
    /// `POST /vectors/hnsw/autotune` (answers when the run ends).
    async fn autotune(&self, body: Value) -> (Self::Status, Value) {
        self.request("POST", "/vectors/hnsw/autotune", Some(body)).await
    }
    /// `POST /vectors/hnsw/autotune?async=true` (answers 202 with the job).
    async fn autotune_async(&self, body: Value) -> (Self::Status, Value) {
        self.request("POST", "/vectors/hnsw/autotune?async=true", Some(body))
            .await
    }
    /// `GET /vectors/jobs{query}`.
    async fn jobs(&self, query: &str) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/jobs{query}"), None).await
    }
    /// `GET /vectors/jobs/{job_id}`.
    async fn job(&self, id: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/jobs/{id}"), None).await
    }
    /// `DELETE /vectors/jobs/{job_id}`.
    async fn cancel_job(&self, id: impl Display) -> (Self::Status, Value) {
        self.request("DELETE", &format!("/vectors/jobs/{id}"), None).await
    }
    /// `PUT /vectors/hnsw/agent/{index}`.
    async fn put_agent(&self, index: impl Display, body: Value) -> (Self::Status, Value) {
        self.request("PUT", &format!("/vectors/hnsw/agent/{index}"), Some(body))
            .await
    }
    /// `GET /vectors/hnsw/agent/{index}`.
    async fn get_agent(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("GET", &format!("/vectors/hnsw/agent/{index}"), None)
            .await
    }
    /// `DELETE /vectors/hnsw/agent/{index}`.
    async fn delete_agent(&self, index: impl Display) -> (Self::Status, Value) {
        self.request("DELETE", &format!("/vectors/hnsw/agent/{index}"), None)
            .await
    }

    /// Polls `path` until `until` holds (about a minute at most), every answer a 200.
    async fn wait_for(&self, path: &str, until: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..3000 {
            let (st, v) = self.request("GET", path, None).await;
            assert!(st == 200, "{st:?} {v}");
            if until(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path} did not get there in 60 s");
    }

    /// Polls a job until `until` holds, checking the progress rules on every answer
    /// (`done <= total`, never going back).
    async fn poll_job(&self, id: impl Display, until: impl Fn(&Value) -> bool) -> Value {
        let mut last_done = 0;
        for _ in 0..6000 {
            let (st, j) = self.job(&id).await;
            assert!(st == 200, "{st:?} {j}");
            let (done, total) = (
                j["progress"]["done"].as_u64().expect("progress.done"),
                j["progress"]["total"].as_u64().expect("progress.total"),
            );
            assert!(done <= total && done >= last_done, "{j}");
            last_done = done;
            if until(&j) {
                return j;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("job {id} did not get there in 2 minutes");
    }
}

/// The refusal shape every error answers in: the status, a stable code, a message.
pub fn assert_error<S: Copy + std::fmt::Debug + PartialEq<u16>>(
    got: &(S, Value),
    status: StatusCode,
    code: &str,
) {
    assert!(got.0 == status.as_u16(), "{:?} {:?}", got.0, got.1);
    assert_eq!(got.1["error"]["code"], code, "{:?}", got.1);
    assert!(
        got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}",
        got.1
    );
}

/// The router in-process over an in-memory store, driven with `oneshot`.
#[derive(Clone)]
pub struct TestApp {
    pub router: Router,
}

impl Api for TestApp {
    type Status = StatusCode;

    async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        match body {
            Some(b) => {
                self.send_raw(method, path, Some("application/json"), b.to_string().into_bytes())
                    .await
            }
            None => self.send_raw(method, path, None, Vec::new()).await,
        }
    }
}

impl TestApp {
    /// A fresh service with a 1 MiB JSON body limit.
    pub async fn new() -> TestApp {
        TestApp::with_limit(1 << 20).await
    }

    /// A fresh service with a JSON body limit of `max_body_bytes` (binary bodies 4 KiB).
    pub async fn with_limit(max_body_bytes: usize) -> TestApp {
        let service = Vectune::open(Storage::in_memory(), 1, vectune::hnsw::BuildOptions::all_cores())
            .await
            .unwrap();
        TestApp::of(router(
            service,
            RouterLimits {
                max_body_bytes,
                max_binary_body_bytes: 4096,
                max_ingest_bytes_in_flight: 2 * 4096,
            },
        ))
    }

    /// A client of a router built by the test (tokens, deadlines, options).
    pub fn of(router: Router) -> TestApp {
        TestApp { router }
    }

    /// Raw bytes with an optional content type; the answer must be JSON (or empty).
    pub async fn send_raw(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {:?}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    /// A cosine index "idx" of `n` deterministic 8-d vectors, ids "v0".."v{n-1}".
    pub async fn seeded(&self, n: usize) {
        let r = self
            .create_index(json!({"name": "idx", "dims": 8, "metric": "cosine"}))
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
        let vectors: Vec<Value> = (0..n)
            .map(|i| json!({"id": format!("v{i}"), "vector": vec_of(i)}))
            .collect();
        let r = self.append("idx", json!({ "vectors": vectors })).await;
        assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
    }

    /// A second index "other" (8-d, l2) with harness "other-h", for cross-index checks.
    pub async fn other_index_with_harness(&self) {
        let r = self
            .create_index(json!({"name": "other", "dims": 8, "metric": "l2"}))
            .await;
        assert_eq!(r.0, StatusCode::CREATED);
        let vectors: Vec<Value> = (0..20)
            .map(|i| json!({"id": format!("o{i}"), "vector": vec_of(i + 500)}))
            .collect();
        assert_eq!(
            self.append("other", json!({ "vectors": vectors })).await.0,
            StatusCode::OK
        );
        let r = self
            .autogen_harness(json!({"name": "other-h", "index_name": "other", "queries": 3, "k": 3}))
            .await;
        assert_eq!(r.0, StatusCode::CREATED);
    }

    /// One search of "idx" for `v` (top 5) that must answer 200.
    pub async fn search_ok(&self, v: Vec<f32>) {
        let (s, r) = self.search("idx", json!({"vector": v, "k": 5})).await;
        assert_eq!(s, StatusCode::OK, "{r:?}");
    }

    /// An autogen harness `name` of "idx": `queries` sampled, exact top-`k`.
    pub async fn autogen(&self, name: &str, queries: usize, k: usize) {
        let r = self
            .autogen_harness(json!({"name": name, "index_name": "idx", "queries": queries, "k": k}))
            .await;
        assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
    }
}

/// A deterministic pseudo-random 8-d vector per `i` (distinct for distinct `i`).
/// An append body of `n` vectors, ids `{prefix}{k}` for k in 0..n, vectors `vec_of(from + k)`.
pub fn batch_of(prefix: &str, from: usize, n: usize) -> Value {
    let vectors: Vec<Value> = (0..n)
        .map(|k| json!({"id": format!("{prefix}{k}"), "vector": vec_of(from + k)}))
        .collect();
    json!({ "vectors": vectors })
}

pub fn vec_of(i: usize) -> Vec<f32> {
    (0..8)
        .map(|d| {
            let mut z = (i as u64 * 8 + d as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A JSON array of numbers as the f32 vector it was serialised from.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// The real binary: `vectune serve` on a free loopback port, JSON over HTTP, SIGTERM and
/// SIGKILL.
pub struct TestServer {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
    /// Every line the server logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// The `host:port` after `listening on http://` in a text or JSON log line.
pub fn listening_addr(line: &str) -> Option<String> {
    let rest = line.split("listening on http://").nth(1)?;
    Some(
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || ".:[]".contains(*c))
            .collect(),
    )
}

impl Api for TestServer {
    type Status = u16;

    async fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        self.call(method, path, body).await
    }
}

impl TestServer {
    /// Starts `vectune serve` on port 0 and waits for its `listening on` line.
    pub fn start(store: &Path) -> TestServer {
        TestServer::start_url(&store.display().to_string(), &[])
    }

    /// Starts `vectune serve` over a fresh temp dir (kept as long as the returned guard).
    pub fn in_temp_dir(env: &[(&str, &str)]) -> (tempfile::TempDir, TestServer) {
        let dir = tempfile::tempdir().unwrap();
        let s = TestServer::start_url(&dir.path().display().to_string(), env);
        (dir, s)
    }

    /// Starts `vectune serve` over any store URL, with extra environment.
    pub fn start_url(store: &str, env: &[(&str, &str)]) -> TestServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vectune"))
            .args(["serve", "--bind", "127.0.0.1:0", "--store", store])
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vectune");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let show = std::env::var_os("TEST_LOG").is_some();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if show {
                    eprintln!("[server] {line}");
                }
                if let Some(addr) = listening_addr(&line) {
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not log 'listening on'");
        TestServer {
            child,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            log,
        }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// SIGTERM, and the exit status it ends with.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().ok();
        panic!("server still running 30 s after SIGTERM");
    }

    /// A `dims`-d index `name` of metric `metric`.
    pub async fn new_index(&self, name: &str, dims: usize, metric: &str) {
        let (st, body) = self
            .create_index(json!({"name": name, "dims": dims, "metric": metric}))
            .await;
        assert_eq!(st, 201, "{body}");
    }

    /// An autogen harness: `queries` stored vectors sampled (seed 42), exact top-`k`.
    pub async fn autogen(&self, name: &str, index: &str, queries: usize, k: usize) {
        let (st, body) = self
            .autogen_harness(json!({"name": name, "index_name": index, "queries": queries, "k": k}))
            .await;
        assert_eq!(st, 201, "{body}");
    }

    /// Appends rows `from..from + n` of `vector(i, dims)` as one fvecs body.
    pub async fn append_fvecs(&self, index: &str, from: usize, n: usize, dims: usize) {
        let r = self
            .client
            .post(format!(
                "{}/vectors/indexes/{index}/vectors?format=fvecs",
                self.base
            ))
            .header("content-type", "application/octet-stream")
            .body(fvecs_rows(from, n, dims))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    /// Appends rows `range` of `vector(i, dims)` as one JSON batch, ids `v{i}`.
    pub async fn append_range(&self, index: &str, range: std::ops::Range<usize>, dims: usize) {
        let vectors: Vec<Value> = range
            .map(|i| json!({"id": format!("v{i}"), "vector": vector(i, dims)}))
            .collect();
        let (st, body) = self.append(index, json!({ "vectors": vectors })).await;
        assert_eq!(st, 200, "{body}");
    }

    /// Waits until `index` serves, and answers its activation.
    pub async fn wait_active(&self, index: &str) -> Value {
        for _ in 0..600 {
            let (_, i) = self.get_index(index).await;
            if !i["active"].is_null() {
                return i["active"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{index} never became active");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic pseudo-random `dims`-d vector per `i`.
pub fn vector(i: usize, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|d| {
            let mut z = ((i * dims + d) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Rows `from..from + n` of `vector(i, dims)` as an fvecs body.
pub fn fvecs_rows(from: usize, n: usize, dims: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(n * (4 + 4 * dims));
    for i in from..from + n {
        body.extend_from_slice(&(dims as i32).to_le_bytes());
        for x in vector(i, dims) {
            body.extend_from_slice(&x.to_le_bytes());
        }
    }
    body
}
