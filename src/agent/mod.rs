//! The background agent: one per index, it keeps tuning while the index lives.
//!
//! Each run measures a few configs chosen ε-greedily — with probability `epsilon` a config
//! drawn from the whole space (so it can leave a local optimum the first tuning settled
//! in), otherwise a one-step neighbour of the promoted config on the same ladders the
//! adaptive search uses (so most of its budget refines what serves) — and promotes the
//! best only if it beats the incumbent re-measured (`if_better`, always).
//!
//! Scheduling: the first run starts as soon as the agent is enabled; later ones
//! `cooldown_secs` after the previous run ended, or earlier when the index grew by more than
//! `retune_on_growth` (a fraction of the vectors at the last run). No trial starts that
//! would take the agent's trials of the last hour above `max_trials_per_hour`. Runs go
//! through the service's autotune engine and its build semaphore; an agent run does not
//! start while a user's autotune of the index runs (it retries shortly), and never blocks
//! one (it takes no claim). A process-wide semaphore of one keeps agents to one trial at a
//! time, so they can never take more than one core from serving or user trials.
//!
//! The loop is generic over [`AgentBackend`] and keeps time with `tokio::time`, so its
//! schedule is tested with a paused clock and a backend whose trials take no time.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod agents;
pub mod canary;
mod config;

pub use agents::{Agents, AgentsError};
pub use config::{
    AgentConfig, AgentConfigIn, AgentError, AgentRecord, AgentState, AskedRules, StoredAgentConfig,
};

use crate::autotune::adaptive::{nearest, Ladders};
use crate::error::Classified;
use crate::monitor::LiveStats;
use crate::names::{HarnessName, IndexName};
use crate::params::{Bounds, HnswConfig, Quantization};
use crate::rng::SplitMix64;
use canary::Verdict;
pub use canary::{Action, Decision};

/// Trials per run at most (fewer when the hourly cap is near).
pub const TRIALS_PER_RUN: usize = 3;
/// How often a waiting agent looks at the index's size.
pub const GROWTH_POLL: Duration = Duration::from_millis(500);
/// How long an agent waits before retrying when another run holds its index.
pub const BUSY_RETRY: Duration = Duration::from_secs(2);
const HOUR: Duration = Duration::from_secs(3600);
/// `canary_queries` when none is given.
pub const DEFAULT_CANARY_QUERIES: u64 = 500;
/// Decisions kept in the agent's record (newest first).
pub const DECISIONS_KEPT: usize = 20;
/// `target_recall` of an agent that sets none (its canary and drift bar too).
pub const DEFAULT_TARGET: f64 = crate::autotune::DEFAULT_TARGET_RECALL;

/// What a finished run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Trials measured.
    pub trials: usize,
    /// Whether it promoted its winner.
    pub promoted: bool,
    /// Why (not).
    pub reason: String,
}

/// What a run reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// It ran.
    Ran(RunReport),
    /// Another run holds the index; try again later.
    Busy,
}

/// What the agent loop needs from the service (a fake in tests).
pub trait AgentBackend: Clone + Send + Sync + 'static {
    /// What can go wrong (the loop logs it with its code and carries on).
    type Error: Classified + Send + Sync + 'static;
    /// Vectors in the index now; `None` once it is gone.
    fn vectors(&self, index: &IndexName) -> Option<u64>;
    /// Writes the index has taken so far — rows appended plus rows deleted, a count that
    /// only grows — for the growth wake; an index that never deletes counts its vectors.
    fn writes(&self, index: &IndexName) -> Option<u64> {
        self.vectors(index)
    }
    /// The bounds its configs stay within (the server's).
    fn bounds(&self) -> Bounds {
        Bounds::SEED
    }
    /// The config that serves or would: the centre of exploitation.
    fn incumbent(&self, index: &IndexName) -> impl Future<Output = Option<HnswConfig>> + Send;
    /// How long ago each of the agent's trials of the last hour was created.
    fn recent_trial_ages(&self, index: &IndexName) -> impl Future<Output = Vec<Duration>> + Send;
    /// Measures `configs` (journal source `agent`) and promotes the best if better.
    fn run(
        &self,
        index: &IndexName,
        config: &AgentConfig,
        configs: Vec<HnswConfig>,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<RunOutcome, Self::Error>> + Send;
    /// Stores the record.
    fn persist(&self, index: &IndexName, record: &AgentRecord) -> impl Future<Output = ()> + Send;
    /// The config that serves and its generation, if the index serves.
    fn active(&self, index: &IndexName) -> Option<(HnswConfig, u64)>;
    /// Activates the promoted config; returns what now serves.
    fn activate(
        &self,
        index: &IndexName,
    ) -> impl Future<Output = Result<(HnswConfig, u64), Self::Error>> + Send;
    /// The live recall monitor's figures of what serves.
    fn live(&self, index: &IndexName) -> Option<LiveStats>;
    /// Rolls the promotion of `config` back (only if it is still the promoted one),
    /// saying why in the registry.
    fn roll_back(
        &self,
        index: &IndexName,
        config: HnswConfig,
        why: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Starts a new capture of a captured harness.
    fn refresh_harness(&self, harness: &HarnessName) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Hears of each decision as it is made (the service counts them as a metric).
    fn decided(&self, _action: Action) {}
}

/// The live side of one agent, shared by its loop and the API.
#[derive(Debug)]
pub struct Shared {
    record: Mutex<AgentRecord>,
    state: Mutex<AgentState>,
    stop: CancellationToken,
    wake: Notify,
}

impl Shared {
    /// A fresh shared state for `record`.
    pub fn new(record: AgentRecord) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(if record.config.enabled {
                AgentState::Idle
            } else {
                AgentState::Disabled
            }),
            record: Mutex::new(record),
            stop: CancellationToken::new(),
            wake: Notify::new(),
        })
    }

    /// The record now.
    pub fn record(&self) -> AgentRecord {
        self.record.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes over the history another instance stored (runs, decisions, rejected
    /// configs) when this one takes the agent over; the settings stay this loop's.
    pub fn adopt(&self, stored: AgentRecord) {
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        *r = AgentRecord {
            config: r.config.clone(),
            ..stored
        };
    }

    /// The state now.
    pub fn state(&self) -> AgentState {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, s: AgentState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    /// Records a decision (newest first), tells `backend`, and returns the record to store.
    fn decide(&self, backend: &impl AgentBackend, d: Decision) -> AgentRecord {
        tracing::info!(action = ?d.action, reason = %d.reason, "agent decision");
        backend.decided(d.action);
        let mut r = self.record.lock().unwrap_or_else(|p| p.into_inner());
        r.decisions.insert(0, d);
        r.decisions.truncate(DECISIONS_KEPT);
        r.clone()
    }

    /// Stops the loop at its next step (a trial under way stops at its next query).
    pub fn stop(&self) {
        self.stop.cancel();
        self.set_state(AgentState::Disabled);
        self.wake.notify_one();
    }

    fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// ε-greedy choice of one config: explore the ladders (within the server's bounds)
/// uniformly, or step one rung from the centre along one knob.
pub fn choose(rng: &mut SplitMix64, epsilon: f64, centre: HnswConfig, ladders: &Ladders) -> HnswConfig {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let explore = u < epsilon;
    if explore {
        return HnswConfig {
            m: ladders.m[rng.below(ladders.m.len())],
            ef_construction: ladders.ec[rng.below(ladders.ec.len())],
            ef_search: ladders.ef[rng.below(ladders.ef.len())],
            quantization: if rng.below(2) == 0 {
                centre.quantization
            } else {
                let twins = Quantization::ALL.len() - 1;
                centre
                    .quantization
                    .twins()
                    .nth(rng.below(twins))
                    .unwrap_or(centre.quantization)
            },
            ..centre
        };
    }
    let step = |ladder: &[u32], v: u32, up: bool| -> u32 {
        let i = nearest(ladder, v);
        let j = if up {
            (i + 1).min(ladder.len() - 1)
        } else {
            i.saturating_sub(1)
        };
        ladder[j]
    };
    let up = rng.below(2) == 0;
    let mut c = centre;
    match rng.below(7) {
        0 | 1 => c.ef_search = step(&ladders.ef, c.ef_search, up),
        2 | 3 => c.m = step(&ladders.m, c.m, up),
        4 | 5 => c.ef_construction = step(&ladders.ec, c.ef_construction, up),
        _ => c.quantization = c.quantization.next(),
    }
    c
}

/// The agent loop of one index, until stopped or the index is gone.
pub async fn run_loop<B: AgentBackend>(backend: B, index: IndexName, shared: Arc<Shared>) {
    let mut rng = SplitMix64::new(uuid::Uuid::now_v7().as_u128() as u64);
    let mut last_end: Option<Instant> = None;
    // the generation whose drift already woke the agent once
    let mut drift_woke: Option<u64> = None;
    loop {
        if shared.stopped() {
            return;
        }
        let cfg = shared.record().config;
        // wait: cooldown (none before the first run), growth, or drift
        let cooldown = Duration::from_secs_f64(cfg.cooldown_secs.min(1e9));
        loop {
            if shared.stopped() {
                return;
            }
            let Some(total) = backend.vectors(&index) else {
                return;
            };
            let record = shared.record();
            let base = record.vectors_at_last_run;
            // growth counts inserts and deletes: the writes since the last run against its
            // vectors (records from before writes were kept compare vector counts)
            let grown = match (base, record.writes_at_last_run, backend.writes(&index)) {
                (Some(b), Some(w0), Some(w)) => w.saturating_sub(w0) as f64 > b as f64 * cfg.retune_on_growth,
                _ => base.is_some_and(|b| total as f64 > b as f64 * (1.0 + cfg.retune_on_growth)),
            };
            let live = backend.live(&index);
            let drift = last_end.is_some()
                && canary::drifted(live, cfg.canary_queries as usize, cfg.target())
                && live.map(|l| l.generation) != drift_woke;
            if drift {
                drift_woke = live.map(|l| l.generation);
                if let Some(l) = &live {
                    tracing::info!(index = %index, live = %canary::describe(l), "agent: live recall drifted below target");
                }
            }
            let now = Instant::now();
            let due = last_end.map(|e| e + cooldown);
            if grown || drift || due.is_none_or(|d| now >= d) {
                break;
            }
            shared.set_state(AgentState::CoolingDown);
            let until = due.map_or(GROWTH_POLL, |d| d - now).min(GROWTH_POLL);
            pause(&shared, until).await;
        }
        // the hourly cap, counted from the journal (the truth, also across restarts)
        let ages: Vec<Duration> = backend
            .recent_trial_ages(&index)
            .await
            .into_iter()
            .filter(|a| *a < HOUR)
            .collect();
        let allowed = (cfg.max_trials_per_hour as usize).saturating_sub(ages.len());
        if allowed == 0 {
            shared.set_state(AgentState::CoolingDown);
            // until the oldest trial of the hour ages out
            let oldest = ages.iter().max().copied().unwrap_or_default();
            pause(&shared, (HOUR - oldest).max(Duration::from_millis(1))).await;
            continue;
        }
        let want = allowed.min(TRIALS_PER_RUN);
        let ladders = Ladders::within(&backend.bounds());
        let centre = backend.incumbent(&index).await.unwrap_or(HnswConfig::DEFAULT);
        let rejected = shared.record().rejected;
        let mut configs: Vec<HnswConfig> = Vec::new();
        for _ in 0..want * 8 {
            let c = choose(&mut rng, cfg.epsilon, centre, &ladders);
            if !configs.contains(&c) && !rejected.contains(&c) {
                configs.push(c);
            }
            if configs.len() == want {
                break;
            }
        }
        let (Some(vectors), writes) = (backend.vectors(&index), backend.writes(&index)) else {
            return;
        };
        shared.set_state(AgentState::Running);
        let outcome = if configs.is_empty() {
            Ok(RunOutcome::Ran(RunReport {
                trials: 0,
                promoted: false,
                reason: "every config it drew was rolled back by a canary before".into(),
            }))
        } else {
            backend.run(&index, &cfg, configs, shared.stop.clone()).await
        };
        match outcome {
            Ok(RunOutcome::Busy) => {
                shared.set_state(AgentState::CoolingDown);
                pause(&shared, BUSY_RETRY).await;
                continue;
            }
            Ok(RunOutcome::Ran(report)) => {
                tracing::info!(index = %index, trials = report.trials, "agent run done");
                if !shared.stopped() {
                    let action = if report.promoted {
                        Action::Promoted
                    } else {
                        Action::Kept
                    };
                    let record = shared.decide(&backend, Decision::now(action, report.reason));
                    backend.persist(&index, &record).await;
                    if cfg.activate {
                        // a generation restored by a rollback is known to miss: its drift
                        // does not wake the agent again (the cooldown does)
                        if let Some(g) = close_loop(&backend, &index, &shared, &cfg).await {
                            drift_woke = Some(g);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(index = %index, error = %e, code = e.classify().code, "agent run failed")
            }
        }
        if shared.stopped() {
            return;
        }
        if cfg.refresh_harness {
            if let Err(e) = backend.refresh_harness(&cfg.harness).await {
                tracing::warn!(index = %index, error = %e, code = e.classify().code, "agent: harness not refreshed");
            }
        }
        last_end = Some(Instant::now());
        let record = {
            let mut r = shared.record.lock().unwrap_or_else(|p| p.into_inner());
            r.last_run_at = Some(Utc::now());
            r.runs += 1;
            r.vectors_at_last_run = Some(vectors);
            r.writes_at_last_run = writes;
            r.clone()
        };
        backend.persist(&index, &record).await;
        shared.set_state(AgentState::CoolingDown);
    }
}

/// After a decision: if what serves is not what is promoted, activate the promoted config
/// (the old generation serves until the swap), watch its canary on the live monitor, and
/// roll the promotion back (re-activating the previous config) if the canary fails.
/// Returns the generation a rollback restored, if it came to that.
async fn close_loop<B: AgentBackend>(
    backend: &B,
    index: &IndexName,
    shared: &Shared,
    cfg: &AgentConfig,
) -> Option<u64> {
    let promoted = backend.incumbent(index).await?;
    let before = backend.active(index);
    if before.map(|a| a.0) == Some(promoted) {
        return None;
    }
    let (_, generation) = match backend.activate(index).await {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(index = %index, error = %e, code = e.classify().code, "agent: activation failed");
            return None;
        }
    };
    let was = before.map_or("nothing".to_string(), |(c, g)| {
        format!("{} (generation {g})", c.describe())
    });
    let activated = format!(
        "activated the promoted {} as generation {generation}, replacing {was}",
        promoted.describe()
    );
    let need = cfg.canary_queries as usize;
    let record = shared.decide(
        backend,
        Decision::now(
            Action::Activated,
            format!("{activated}; canary: waiting for {need} live samples"),
        ),
    );
    backend.persist(index, &record).await;
    shared.set_state(AgentState::Canary);
    let target = cfg.target();
    loop {
        if shared.stopped() {
            return None;
        }
        match canary::judge(backend.live(index), generation, need, target) {
            Verdict::Waiting { .. } => pause(shared, GROWTH_POLL).await,
            Verdict::Passed(l) => {
                let record = shared.decide(
                    backend,
                    Decision::now(
                        Action::Activated,
                        format!(
                            "{activated}; canary passed: {} reaches target {target}",
                            canary::describe(&l)
                        ),
                    ),
                );
                backend.persist(index, &record).await;
                return None;
            }
            Verdict::Failed(l) => {
                let why = format!(
                    "canary failed: {}, whose lower bound misses target {target}",
                    canary::describe(&l)
                );
                if let Err(e) = backend.roll_back(index, promoted, &why).await {
                    tracing::warn!(index = %index, error = %e, code = e.classify().code, "agent: roll back failed");
                    return None;
                }
                let (back, restored) = match backend.activate(index).await {
                    Ok((c, g)) => (
                        format!("re-activated {} as generation {g}", c.describe()),
                        Some(g),
                    ),
                    Err(e) => (format!("re-activation failed: {e}"), None),
                };
                let record = {
                    let mut r = shared.record.lock().unwrap_or_else(|p| p.into_inner());
                    if !r.rejected.contains(&promoted) {
                        r.rejected.push(promoted);
                    }
                    drop(r);
                    shared.decide(
                        backend,
                        Decision::now(
                            Action::RolledBack,
                            format!(
                                "{why}: rolled the promotion of {} back and {back}",
                                promoted.describe()
                            ),
                        ),
                    )
                };
                backend.persist(index, &record).await;
                return restored;
            }
        }
    }
}

/// Sleeps `d`, or less when the agent is stopped.
async fn pause(shared: &Shared, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shared.wake.notified() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autotune::Rules;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Clone, Default)]
    struct Fake {
        vectors: Arc<AtomicU64>,
        /// Writes so far when set (non-zero); else the vectors.
        writes: Arc<AtomicU64>,
        /// (when, how many trials) of each run
        runs: Arc<Mutex<Vec<(Instant, usize)>>>,
        persisted: Arc<Mutex<Vec<AgentRecord>>>,
        /// The promotion stack (top is current) and what serves (config, generation).
        promoted: Arc<Mutex<Vec<HnswConfig>>>,
        serving: Arc<Mutex<Option<(HnswConfig, u64)>>>,
        /// Each run promotes this config, if set.
        promote: Arc<Mutex<Option<HnswConfig>>>,
        /// Live recall of any generation: (recall, lower, upper), samples per poll.
        live: Arc<Mutex<Option<(f64, f64, f64)>>>,
        samples: Arc<AtomicU64>,
        refreshed: Arc<AtomicU64>,
    }

    /// The fake never fails; its error type only has to be one.
    #[derive(Debug, thiserror::Error)]
    #[error("fake")]
    struct FakeError;

    impl Classified for FakeError {
        fn classify(&self) -> crate::error::Class {
            crate::error::Class::INTERNAL
        }
    }

    impl AgentBackend for Fake {
        type Error = FakeError;

        fn vectors(&self, _: &IndexName) -> Option<u64> {
            Some(self.vectors.load(Ordering::Relaxed))
        }
        fn writes(&self, _: &IndexName) -> Option<u64> {
            match self.writes.load(Ordering::Relaxed) {
                0 => Some(self.vectors.load(Ordering::Relaxed)),
                w => Some(w),
            }
        }
        async fn incumbent(&self, _: &IndexName) -> Option<HnswConfig> {
            self.promoted.lock().unwrap().last().copied()
        }
        async fn recent_trial_ages(&self, _: &IndexName) -> Vec<Duration> {
            let now = Instant::now();
            let runs = self.runs.lock().unwrap();
            runs.iter()
                .flat_map(|(t, n)| std::iter::repeat_n(now.duration_since(*t), *n))
                .collect()
        }
        async fn run(
            &self,
            _: &IndexName,
            _: &AgentConfig,
            configs: Vec<HnswConfig>,
            _: CancellationToken,
        ) -> Result<RunOutcome, FakeError> {
            self.runs.lock().unwrap().push((Instant::now(), configs.len()));
            let promote = *self.promote.lock().unwrap();
            if let Some(c) = promote {
                self.promoted.lock().unwrap().push(c);
            }
            Ok(RunOutcome::Ran(RunReport {
                trials: configs.len(),
                promoted: promote.is_some(),
                reason: "fake".into(),
            }))
        }
        async fn persist(&self, _: &IndexName, r: &AgentRecord) {
            self.persisted.lock().unwrap().push(r.clone());
        }
        fn active(&self, _: &IndexName) -> Option<(HnswConfig, u64)> {
            *self.serving.lock().unwrap()
        }
        async fn activate(&self, _: &IndexName) -> Result<(HnswConfig, u64), FakeError> {
            let c = self
                .promoted
                .lock()
                .unwrap()
                .last()
                .copied()
                .unwrap_or(HnswConfig::DEFAULT);
            let mut s = self.serving.lock().unwrap();
            let g = s.map_or(1, |(_, g)| g + 1);
            *s = Some((c, g));
            self.samples.store(0, Ordering::Relaxed);
            Ok((c, g))
        }
        fn live(&self, _: &IndexName) -> Option<LiveStats> {
            let (recall_at_k, recall_ci_low, recall_ci_high) = (*self.live.lock().unwrap())?;
            // each look sees 10 more samples of what serves
            let queries = self.samples.fetch_add(10, Ordering::Relaxed) as usize + 10;
            Some(LiveStats {
                queries,
                recall_at_k,
                recall_ci_low,
                recall_ci_high,
                window: 1000,
                generation: self.serving.lock().unwrap().map_or(0, |s| s.1),
            })
        }
        async fn roll_back(&self, _: &IndexName, c: HnswConfig, _: &str) -> Result<(), FakeError> {
            let mut p = self.promoted.lock().unwrap();
            if p.last() == Some(&c) {
                p.pop();
            }
            Ok(())
        }
        async fn refresh_harness(&self, _: &HarnessName) -> Result<(), FakeError> {
            self.refreshed.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn config(cooldown: f64, cap: u64) -> AgentConfig {
        AgentConfig::parse(AgentConfigIn {
            harness: "h".into(),
            cooldown_secs: Some(cooldown),
            max_trials_per_hour: Some(cap as i64),
            epsilon: Some(0.5),
            retune_on_growth: Some(0.1),
            ..Default::default()
        })
        .unwrap()
    }

    fn start(fake: &Fake, cfg: AgentConfig) -> (Arc<Shared>, Instant) {
        fake.vectors.store(1000, Ordering::Relaxed);
        let shared = Shared::new(AgentRecord::new(cfg));
        let t0 = Instant::now();
        tokio::spawn(run_loop(
            fake.clone(),
            IndexName::parse("ix").unwrap(),
            shared.clone(),
        ));
        (shared, t0)
    }

    fn run_times(fake: &Fake, t0: Instant) -> Vec<u64> {
        fake.runs
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.duration_since(t0).as_secs())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn first_run_at_once_then_one_per_cooldown() {
        let fake = Fake::default();
        let (shared, t0) = start(&fake, config(600.0, 1000));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(run_times(&fake, t0), vec![0], "first run without a cooldown");
        assert_eq!(shared.state(), AgentState::CoolingDown);
        tokio::time::sleep(Duration::from_secs(598)).await;
        assert_eq!(run_times(&fake, t0).len(), 1, "nothing inside the cooldown");
        tokio::time::sleep(Duration::from_secs(1100)).await;
        assert_eq!(run_times(&fake, t0), vec![0, 600, 1200]);
        let r = shared.record();
        assert_eq!((r.runs, r.vectors_at_last_run), (3, Some(1000)));
        // each run stores its decision, then its run stats
        assert_eq!(fake.persisted.lock().unwrap().len(), 6);
        shared.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn hourly_cap_is_never_exceeded() {
        let fake = Fake::default();
        let (shared, t0) = start(&fake, config(1.0, 5));
        tokio::time::sleep(Duration::from_secs(3599)).await;
        let in_first_hour: usize = fake.runs.lock().unwrap().iter().map(|r| r.1).sum();
        assert_eq!(in_first_hour, 5, "{:?}", run_times(&fake, t0));
        // every rolling hour holds at most 5 trials, also over three hours
        tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
        let runs = fake.runs.lock().unwrap().clone();
        for (i, (t, _)) in runs.iter().enumerate() {
            let in_hour: usize = runs[i..]
                .iter()
                .take_while(|(u, _)| u.duration_since(*t) < HOUR)
                .map(|r| r.1)
                .sum();
            assert!(in_hour <= 5, "{in_hour} trials in the hour from run {i}");
        }
        assert!(
            runs.iter().map(|r| r.1).sum::<usize>() >= 15,
            "it resumes each hour"
        );
        shared.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn growth_wakes_it_before_the_cooldown_and_small_growth_does_not() {
        let fake = Fake::default();
        let (shared, t0) = start(&fake, config(600.0, 1000));
        tokio::time::sleep(Duration::from_secs(10)).await;
        fake.vectors.store(1050, Ordering::Relaxed); // +5 %: below 10 %
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run_times(&fake, t0), vec![0]);
        fake.vectors.store(1200, Ordering::Relaxed); // +20 %
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(run_times(&fake, t0), vec![0, 20], "woken within a poll");
        assert_eq!(shared.record().vectors_at_last_run, Some(1200));
        shared.stop();
    }

    /// Deletes wake it too: the index shrinks, but the writes since the last run pass
    /// `retune_on_growth` of its vectors.
    #[tokio::test(start_paused = true)]
    async fn deletes_count_as_growth() {
        let fake = Fake::default();
        fake.writes.store(1000, Ordering::Relaxed);
        let (shared, t0) = start(&fake, config(600.0, 1000));
        tokio::time::sleep(Duration::from_secs(10)).await;
        // 50 deleted: 5 % of the writes
        fake.vectors.store(950, Ordering::Relaxed);
        fake.writes.store(1050, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(run_times(&fake, t0), vec![0]);
        // 150 deleted in all: the vectors shrank, the writes grew by 15 %
        fake.vectors.store(850, Ordering::Relaxed);
        fake.writes.store(1150, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(run_times(&fake, t0), vec![0, 20], "woken within a poll");
        assert_eq!(shared.record().writes_at_last_run, Some(1150));
        shared.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_agent_runs_no_more() {
        let fake = Fake::default();
        let (shared, t0) = start(&fake, config(1.0, 1000));
        tokio::time::sleep(Duration::from_millis(500)).await;
        shared.stop();
        fake.vectors.store(5000, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(run_times(&fake, t0), vec![0]);
        assert_eq!(shared.state(), AgentState::Disabled);
    }

    fn closing(cfg: AgentConfig) -> AgentConfig {
        AgentConfig {
            activate: true,
            canary_queries: 50,
            rules: Rules {
                target_recall: 0.95,
                ..cfg.rules
            },
            ..cfg
        }
    }

    #[tokio::test(start_paused = true)]
    async fn activate_keeps_serving_on_the_promoted_config_after_a_passing_canary() {
        let fake = Fake::default();
        let good = HnswConfig {
            m: 24,
            ..HnswConfig::DEFAULT
        };
        *fake.promote.lock().unwrap() = Some(good);
        *fake.serving.lock().unwrap() = Some((HnswConfig::DEFAULT, 1));
        *fake.live.lock().unwrap() = Some((0.99, 0.98, 1.0));
        let (shared, _) = start(&fake, closing(config(600.0, 1000)));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(fake.active(&IndexName::parse("ix").unwrap()), Some((good, 2)));
        let r = shared.record();
        let d = r.last_decision().unwrap();
        assert_eq!(d.action, Action::Activated);
        assert!(d.reason.contains("canary passed"), "{}", d.reason);
        let actions: Vec<Action> = r.decisions.iter().map(|d| d.action).collect();
        assert_eq!(actions, [Action::Activated, Action::Activated, Action::Promoted]);
        assert!(r.rejected.is_empty());
        shared.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_canary_rolls_back_and_reactivates_the_previous_config() {
        let fake = Fake::default();
        let (old, bad) = (
            HnswConfig::DEFAULT,
            HnswConfig {
                ef_search: 10,
                ..HnswConfig::DEFAULT
            },
        );
        fake.promoted.lock().unwrap().push(old);
        *fake.promote.lock().unwrap() = Some(bad);
        *fake.serving.lock().unwrap() = Some((old, 1));
        *fake.live.lock().unwrap() = Some((0.9, 0.88, 0.92));
        let (shared, _) = start(&fake, closing(config(600.0, 1000)));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let ix = IndexName::parse("ix").unwrap();
        assert_eq!(
            fake.active(&ix).map(|a| a.0),
            Some(old),
            "the previous config serves again: {:?}",
            shared.record().decisions
        );
        assert_eq!(
            *fake.promoted.lock().unwrap(),
            vec![old],
            "the promotion was rolled back"
        );
        let r = shared.record();
        let d = r.last_decision().unwrap();
        assert_eq!(d.action, Action::RolledBack);
        assert!(
            d.reason.contains("canary failed") && d.reason.contains("0.9000"),
            "{}",
            d.reason
        );
        assert_eq!(r.rejected, vec![bad]);
        assert_eq!(fake.persisted.lock().unwrap().last().unwrap().rejected, vec![bad]);
        shared.stop();
    }

    #[tokio::test(start_paused = true)]
    async fn without_activate_nothing_is_activated_and_drift_wakes_it() {
        let fake = Fake::default();
        *fake.promote.lock().unwrap() = Some(HnswConfig {
            m: 24,
            ..HnswConfig::DEFAULT
        });
        *fake.serving.lock().unwrap() = Some((HnswConfig::DEFAULT, 1));
        let cfg = AgentConfig {
            canary_queries: 50,
            refresh_harness: true,
            ..config(600.0, 1000)
        };
        let (shared, t0) = start(&fake, cfg);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let ix = IndexName::parse("ix").unwrap();
        assert_eq!(fake.active(&ix), Some((HnswConfig::DEFAULT, 1)));
        assert_eq!(shared.record().last_decision().unwrap().action, Action::Promoted);
        assert_eq!(
            fake.refreshed.load(Ordering::Relaxed),
            1,
            "refresh_harness after the run"
        );
        // live recall well below target: woken long before the cooldown, once per generation
        *fake.live.lock().unwrap() = Some((0.80, 0.78, 0.82));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(run_times(&fake, t0).len(), 2, "{:?}", run_times(&fake, t0));
        shared.stop();
    }

    #[test]
    fn settings_are_checked() {
        let base = AgentConfigIn {
            harness: "h".into(),
            ..Default::default()
        };
        let d = AgentConfig::parse(base.clone()).unwrap();
        assert_eq!(
            (
                d.enabled,
                d.cooldown_secs,
                d.max_trials_per_hour,
                d.epsilon,
                d.retune_on_growth
            ),
            (true, 600.0, 20, 0.25, 0.1)
        );
        assert_eq!(
            (d.activate, d.canary_queries, d.refresh_harness),
            (false, 500, false)
        );
        for bad in [
            AgentConfigIn {
                epsilon: Some(1.5),
                ..base.clone()
            },
            AgentConfigIn {
                cooldown_secs: Some(-1.0),
                ..base.clone()
            },
            AgentConfigIn {
                max_trials_per_hour: Some(-1),
                ..base.clone()
            },
            AgentConfigIn {
                retune_on_growth: Some(-0.1),
                ..base.clone()
            },
            AgentConfigIn {
                objective: Some("fastest".into()),
                ..base.clone()
            },
            AgentConfigIn {
                target_recall: Some(1.2),
                ..base.clone()
            },
            AgentConfigIn {
                canary_queries: Some(0),
                ..base.clone()
            },
        ] {
            assert!(AgentConfig::parse(bad).is_err());
        }
    }

    #[test]
    fn epsilon_splits_explore_and_exploit() {
        let centre = HnswConfig::DEFAULT;
        let mut rng = SplitMix64::new(1);
        // exploit only: one knob, one rung away
        for _ in 0..200 {
            let c = choose(&mut rng, 0.0, centre, &Ladders::seed());
            let moved = [
                c.m != centre.m,
                c.ef_construction != centre.ef_construction,
                c.ef_search != centre.ef_search,
                c.quantization != centre.quantization,
            ];
            assert!(moved.iter().filter(|&&x| x).count() <= 1, "{c:?}");
        }
        // explore only: everything on the ladders, and more than the neighbourhood
        let far = (0..200)
            .map(|_| choose(&mut rng, 1.0, centre, &Ladders::seed()))
            .filter(|c| c.m.abs_diff(centre.m) > 8 || c.ef_search.abs_diff(centre.ef_search) > 20)
            .count();
        assert!(far > 50, "{far}");
    }
}
