//! The real binary as the end-to-end tests drive it: `vectune serve` on a free loopback
//! port, JSON over HTTP, SIGTERM / SIGKILL, and small fixtures. Each test crate uses a part.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub struct Server {
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

impl Server {
    /// Starts `vectune serve` on port 0 and waits for its `listening on` line.
    pub fn start(store: &Path) -> Server {
        Server::start_url(&store.display().to_string(), &[])
    }

    /// Starts `vectune serve` over a fresh temp dir (kept as long as the returned guard).
    pub fn in_temp_dir(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
        let dir = tempfile::tempdir().unwrap();
        let s = Server::start_url(&dir.path().display().to_string(), env);
        (dir, s)
    }

    /// Starts `vectune serve` over any store URL, with extra environment.
    pub fn start_url(store: &str, env: &[(&str, &str)]) -> Server {
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
        Server {
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

    /// Polls `path` until `until` holds (60 s at most).
    pub async fn wait_for(&self, path: &str, until: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let (st, v) = self.get(path).await;
            assert_eq!(st, 200, "{v}");
            if until(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path} did not get there in 60 s");
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn vector(i: usize, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|d| {
            let mut z = ((i * dims + d) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub async fn create_index(s: &Server, name: &str, dims: usize, metric: &str) {
    let (st, body) = s
        .post(
            "/vectors/indexes",
            Some(json!({"name": name, "dims": dims, "metric": metric})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
}

/// An autogen harness: `queries` stored vectors sampled (seed 42), exact top-`k`.
pub async fn autogen(s: &Server, name: &str, index: &str, queries: usize, k: usize) {
    let (st, body) = s
        .post(
            "/vectors/harness/autogen",
            Some(json!({"name": name, "index_name": index, "queries": queries, "k": k})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
}

/// Appends rows `from..from + n` of `vector(i, dims)` as one fvecs body.
pub async fn append_fvecs(s: &Server, index: &str, from: usize, n: usize, dims: usize) {
    let r = s
        .client
        .post(format!("{}/vectors/indexes/{index}/vectors?format=fvecs", s.base))
        .header("content-type", "application/octet-stream")
        .body(fvecs_rows(from, n, dims))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

pub async fn append_range(s: &Server, index: &str, range: std::ops::Range<usize>, dims: usize) {
    let vectors: Vec<Value> = range
        .map(|i| json!({"id": format!("v{i}"), "vector": vector(i, dims)}))
        .collect();
    let (st, body) = s
        .post(
            &format!("/vectors/indexes/{index}/vectors"),
            Some(json!({ "vectors": vectors })),
        )
        .await;
    assert_eq!(st, 200, "{body}");
}

pub async fn wait_active(s: &Server, index: &str) -> Value {
    for _ in 0..600 {
        let (_, i) = s.get(&format!("/vectors/indexes/{index}")).await;
        if !i["active"].is_null() {
            return i["active"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{index} never became active");
}

/// Polls a job until `until` holds (checking the progress rules on every answer).
pub async fn poll_job(s: &Server, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    let mut last_done = 0;
    for _ in 0..6000 {
        let (st, j) = s.get(&format!("/vectors/jobs/{id}")).await;
        assert_eq!(st, 200, "{j}");
        let (done, total) = (
            j["progress"]["done"].as_u64().unwrap(),
            j["progress"]["total"].as_u64().unwrap(),
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
