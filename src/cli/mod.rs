//! The command line beside `serve`: a thin HTTP client of a running server, for CI scripts
//! and people. Every command speaks the public API only (the same JSON a curl user sees),
//! so it works against any vectune, local or remote.
//!
//! Exit codes: `0` success; `3` an autotune (or a watched autotune job) ended without a
//! promotion — no trial was eligible, or the winner did not beat the incumbent; `1` any
//! error, with the server's error code and message on stderr; `2` bad command-line usage.

mod progress;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use progress::Progress;

/// Exit code of a run that ended without promoting.
pub const EXIT_NOT_PROMOTED: u8 = 3;

/// What went wrong, as the command line reports it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error body.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body's `code`.
        code: String,
        /// The error body's `message`.
        message: String,
    },
    /// The server could not be reached or answered something that is not the API.
    #[error("{0}")]
    Transport(String),
    /// A local file or argument is unusable.
    #[error("{0}")]
    Input(String),
    /// A job ended failed or cancelled.
    #[error("job {id} {state}: {code}: {message}")]
    Job {
        /// The job.
        id: String,
        /// `failed` or `cancelled`.
        state: String,
        /// Its error code (`cancelled` for a cancel).
        code: String,
        /// Its message.
        message: String,
    },
}

/// How a command ended (when it did not fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Ok,
    /// An autotune ended without a promotion.
    NotPromoted,
}

/// How long a binary upload is sent again while the server answers `503 overloaded`.
pub const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(600);

/// A client of one server.
pub struct Client {
    server: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of `server` (`http://host:port`), sending `token` as a bearer token.
    pub fn new(server: &str, token: Option<String>) -> Client {
        Client {
            server: server.trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value), CliError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| CliError::Transport(format!("cannot reach {}: {e}", self.server)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CliError::Transport(format!("reading the answer failed: {e}")))?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| {
                CliError::Transport(format!(
                    "HTTP {status} from {} is not vectune's JSON: {}",
                    self.server,
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ))
            })?
        };
        if status >= 400 {
            let text = |k: &str| body["error"][k].as_str().unwrap_or("").to_string();
            return Err(CliError::Api {
                status,
                code: text("code"),
                message: text("message"),
            });
        }
        Ok((status, body))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        Ok(self.send(self.http.get(self.url(path))).await?.1)
    }

    /// `POST path` with an optional JSON body.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<(u16, Value), CliError> {
        let req = self.http.post(self.url(path));
        let req = match body {
            Some(b) => req.json(b),
            None => req,
        };
        self.send(req).await
    }

    /// `POST path` with a binary body. A `503 overloaded` (the server is taking other
    /// uploads up to its bytes in flight, or its queue is full) stored nothing, so the upload
    /// is sent again after a pause that grows from 1 s to 10 s, for up to [`BUSY_RETRY`];
    /// any other answer is final.
    async fn post_file(&self, path: &str, file: &Path) -> Result<Value, CliError> {
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_secs(1);
        let unreadable = |e: std::io::Error| CliError::Input(format!("cannot read {}: {e}", file.display()));
        loop {
            // streamed from the file with its length: the client never holds the body (a
            // 2 GB file costs this process a read buffer, not 2 GB); each attempt reopens it
            let f = tokio::fs::File::open(file).await.map_err(unreadable)?;
            let length = f.metadata().await.map_err(unreadable)?.len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
            let req = self
                .http
                .post(self.url(path))
                .header("content-type", "application/octet-stream")
                .header("content-length", length)
                .body(body);
            match self.send(req).await {
                Err(CliError::Api {
                    status: 503, code, ..
                }) if code == "overloaded" && started.elapsed() + pause <= BUSY_RETRY => {
                    eprintln!(
                        "vectune: the server is busy with other uploads (503 overloaded); sending again in {} s",
                        pause.as_secs()
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(10));
                }
                other => return Ok(other?.1),
            }
        }
    }
}

/// What `vectune autotune` was asked.
#[derive(Debug, Clone, Default)]
pub struct AutotuneArgs {
    /// The index.
    pub index: String,
    /// The harness.
    pub harness: String,
    /// A JSON file holding an autotune body (its `index_name` / `harness` are overridden).
    pub body: Option<PathBuf>,
    /// `target_recall`.
    pub target_recall: Option<f64>,
    /// `objective`.
    pub objective: Option<String>,
    /// `strategy`.
    pub strategy: Option<String>,
}

/// The autotune request body the flags ask for.
pub fn autotune_body(args: &AutotuneArgs) -> Result<Value, CliError> {
    let mut body = match &args.body {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", path.display())))?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::Input(format!("{} is not JSON: {e}", path.display())))?;
            if !v.is_object() {
                return Err(CliError::Input(format!(
                    "{} must hold a JSON object",
                    path.display()
                )));
            }
            v
        }
        None => json!({}),
    };
    body["index_name"] = json!(args.index);
    body["harness"] = json!(args.harness);
    if let Some(r) = args.target_recall {
        body["target_recall"] = json!(r);
    }
    if let Some(o) = &args.objective {
        body["objective"] = json!(o);
    }
    if let Some(s) = &args.strategy {
        body["strategy"] = json!(s);
    }
    Ok(body)
}

/// Where a command writes: the answer (stdout) and progress (stderr on a terminal or as
/// plain lines).
pub struct Output<'a> {
    /// Answers.
    pub out: &'a mut dyn Write,
    /// Progress.
    pub progress: Progress,
    /// Print raw JSON instead of a summary.
    pub json: bool,
}

impl Output<'_> {
    fn print(&mut self, raw: &Value, summary: impl FnOnce() -> String) {
        let text = if self.json {
            serde_json::to_string_pretty(raw).unwrap_or_default()
        } else {
            summary()
        };
        let _ = writeln!(self.out, "{text}");
    }
}

fn fmt_config(c: &Value) -> String {
    format!(
        "m={} ef_construction={} ef_search={}{}",
        c["m"],
        c["ef_construction"],
        c["ef_search"],
        match c["quantization"].as_str() {
            Some(q) if q != "none" => format!(" quantization={q}"),
            _ => String::new(),
        }
    )
}

/// Starts an async autotune and follows it to its end.
pub async fn autotune(c: &Client, args: &AutotuneArgs, o: &mut Output<'_>) -> Result<Outcome, CliError> {
    let body = autotune_body(args)?;
    let (_, accepted) = c.post("/vectors/hnsw/autotune?async=true", Some(&body)).await?;
    let id = accepted["job_id"]
        .as_str()
        .ok_or_else(|| CliError::Transport(format!("no job_id in {accepted}")))?
        .to_string();
    watch(c, &id, o).await
}

/// Follows job `id` to its end with progress; prints its result.
pub async fn watch(c: &Client, id: &str, o: &mut Output<'_>) -> Result<Outcome, CliError> {
    let started = Instant::now();
    // the pace is the job's own (a job watched after it started has run longer than this)
    let since_start = |job: &Value| -> Duration {
        job["started_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().ok())
            .unwrap_or_else(|| started.elapsed())
    };
    let job = loop {
        let job = c.get(&format!("/vectors/jobs/{id}")).await?;
        let state = job["state"].as_str().unwrap_or("");
        // a build under way shows in tenths (a plain log gets a line per tenth, not per round)
        let build = &job["progress"]["build"];
        let shown = match (build["done"].as_u64(), build["total"].as_u64()) {
            (Some(d), Some(t)) if t > 0 && state == "running" => {
                format!("{state}, building {}%", d * 10 / t * 10)
            }
            _ => state.to_string(),
        };
        let (done, total) = (
            job["progress"]["done"].as_u64().unwrap_or(0),
            job["progress"]["total"].as_u64().unwrap_or(0),
        );
        o.progress.show(
            job["kind"].as_str().unwrap_or("job"),
            &shown,
            done,
            total,
            since_start(&job),
        );
        if matches!(state, "succeeded" | "failed" | "cancelled") {
            o.progress.finish();
            break job;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    match job["state"].as_str() {
        Some("succeeded") => {}
        Some(state) => {
            let text = |k: &str| job["error"][k].as_str().unwrap_or(state).to_string();
            return Err(CliError::Job {
                id: id.to_string(),
                state: state.to_string(),
                code: text("code"),
                message: text("message"),
            });
        }
        None => return Err(CliError::Transport(format!("a job without a state: {job}"))),
    }
    let result = &job["result"];
    if job["kind"] == "activate" {
        o.print(result, || activation_summary(result));
        return Ok(Outcome::Ok);
    }
    o.print(result, || {
        let mut s = format!(
            "autotune of {}: {} trials, {} eligible, {} builds, {:.1} s",
            result["index_name"].as_str().unwrap_or("?"),
            result["trials_run"],
            result["trials_eligible"],
            result["builds"],
            result["duration_secs"].as_f64().unwrap_or(0.0)
        );
        let w = &result["winner"];
        if w.is_object() {
            s += &format!(
                "\nwinner: {}  recall@k {:.4}  p50 {:.1} µs  trial {}",
                fmt_config(&w["config"]),
                w["recall_at_k"].as_f64().unwrap_or(f64::NAN),
                w["search_latency_p50_us"].as_f64().unwrap_or(f64::NAN),
                w["trial_id"].as_str().unwrap_or("?")
            );
        }
        s += &format!(
            "\npromoted: {}{}",
            result["promoted"],
            match result["reason"].as_str() {
                Some(r) => format!(" ({r})"),
                None => String::new(),
            }
        );
        s
    });
    Ok(if result["promoted"] == json!(true) {
        Outcome::Ok
    } else {
        Outcome::NotPromoted
    })
}

fn activation_summary(r: &Value) -> String {
    format!(
        "{} serves generation {} ({}, {} vectors, {:.2} s{})",
        r["index_name"].as_str().unwrap_or("?"),
        r["generation"],
        fmt_config(&r["config"]),
        r["vectors"],
        r["build_time_secs"].as_f64().unwrap_or(0.0),
        if r["loaded_from_store"] == json!(true) {
            ", loaded from the store"
        } else {
            ""
        }
    )
}

/// `vectune jobs list --index I`.
pub async fn jobs_list(c: &Client, index: &str, o: &mut Output<'_>) -> Result<Outcome, CliError> {
    let v = c.get(&format!("/vectors/jobs?index={}", enc(index))).await?;
    o.print(&v, || {
        let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            return format!("no jobs on {index}");
        }
        jobs.iter()
            .map(|j| {
                format!(
                    "{}  {:<8} {:<9} {}/{}  {}{}",
                    j["id"].as_str().unwrap_or("?"),
                    j["kind"].as_str().unwrap_or("?"),
                    j["state"].as_str().unwrap_or("?"),
                    j["progress"]["done"],
                    j["progress"]["total"],
                    j["created_at"].as_str().unwrap_or("?"),
                    match j["error"]["code"].as_str() {
                        Some(code) => format!("  error {code}"),
                        None => String::new(),
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(Outcome::Ok)
}

fn promoted_summary(v: &Value) -> String {
    let cur = &v["current"];
    let history = v["history"].as_array().map_or(0, Vec::len);
    if cur.is_null() {
        return format!(
            "{}: nothing promoted ({history} in history)",
            v["index_name"].as_str().unwrap_or("?")
        );
    }
    format!(
        "{}: {} (trial {}, by {} at {}){}\n{history} earlier in history",
        v["index_name"].as_str().unwrap_or("?"),
        fmt_config(&cur["config"]),
        cur["trial_id"].as_str().unwrap_or("?"),
        cur["promoted_by"].as_str().unwrap_or("?"),
        cur["promoted_at"].as_str().unwrap_or("?"),
        match cur["note"].as_str() {
            Some(n) => format!("\nnote: {n}"),
            None => String::new(),
        }
    )
}

/// `vectune promoted I`.
pub async fn promoted(c: &Client, index: &str, o: &mut Output<'_>) -> Result<Outcome, CliError> {
    let v = c.get(&format!("/vectors/hnsw/promoted/{}", enc(index))).await?;
    o.print(&v, || promoted_summary(&v));
    Ok(Outcome::Ok)
}

/// `vectune rollback I`.
pub async fn rollback(c: &Client, index: &str, o: &mut Output<'_>) -> Result<Outcome, CliError> {
    let (_, v) = c
        .post(&format!("/vectors/hnsw/rollback/{}", enc(index)), None)
        .await?;
    o.print(&v, || format!("rolled back; now {}", promoted_summary(&v)));
    Ok(Outcome::Ok)
}

/// `vectune activate I [--wait]`: as a job; with `wait`, followed to its end.
pub async fn activate(c: &Client, index: &str, wait: bool, o: &mut Output<'_>) -> Result<Outcome, CliError> {
    let (_, accepted) = c
        .post(
            &format!("/vectors/indexes/{}/activate?async=true", enc(index)),
            None,
        )
        .await?;
    let id = accepted["job_id"].as_str().unwrap_or("").to_string();
    if wait {
        return watch(c, &id, o).await;
    }
    o.print(&accepted, || {
        format!("activation of {index} started: job {id} (vectune jobs watch {id})")
    });
    Ok(Outcome::Ok)
}

/// `vectune ingest I FILE`: a `.fvecs` or `.npy` file as one binary append.
pub async fn ingest(c: &Client, index: &str, file: &Path, o: &mut Output<'_>) -> Result<Outcome, CliError> {
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some("fvecs") => "fvecs",
        Some("npy") => "npy",
        _ => {
            return Err(CliError::Input(format!(
                "{}: give a .fvecs or .npy file",
                file.display()
            )))
        }
    };
    let v = c
        .post_file(
            &format!("/vectors/indexes/{}/vectors?format={format}", enc(index)),
            file,
        )
        .await?;
    o.print(&v, || {
        format!(
            "appended {} vectors to {index} (ids {}..{}); {} stored",
            v["appended"],
            v["first_id"].as_str().unwrap_or("?"),
            v["last_id"].as_str().unwrap_or("?"),
            v["total"]
        )
    });
    Ok(Outcome::Ok)
}

/// A name as one path segment (names are `[A-Za-z0-9_.-]`, but a typo must not reach another
/// route).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_file_is_overridden_by_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.json");
        std::fs::write(
            &f,
            r#"{"index_name": "x", "harness": "y", "strategy": "grid", "promote": "never"}"#,
        )
        .unwrap();
        let args = AutotuneArgs {
            index: "docs".into(),
            harness: "smoke".into(),
            body: Some(f),
            target_recall: Some(0.95),
            strategy: Some("adaptive".into()),
            ..Default::default()
        };
        let b = autotune_body(&args).unwrap();
        assert_eq!(
            b,
            json!({"index_name": "docs", "harness": "smoke", "strategy": "adaptive", "promote": "never", "target_recall": 0.95})
        );
        std::fs::write(dir.path().join("a.json"), "[1]").unwrap();
        let bad = AutotuneArgs {
            body: Some(dir.path().join("a.json")),
            ..args
        };
        assert!(matches!(autotune_body(&bad), Err(CliError::Input(_))));
    }

    #[test]
    fn names_stay_one_path_segment() {
        assert_eq!(enc("idx.v1_a-b"), "idx.v1_a-b");
        assert_eq!(enc("../x"), "..%2Fx");
        assert_eq!(enc("a b?"), "a%20b%3F");
    }
}
