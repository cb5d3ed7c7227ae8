//! The run loop on a fake backend, on tokio's paused clock.

use super::*;
use crate::autotune::refine::tests::{cost, recall};
use crate::autotune::SpecFields;
use crate::measure::Paired;
use crate::params::Engine;
use crate::params::RawHnswConfig;
use crate::rng::SplitMix64;
use crate::trials::TrialMetrics;
use std::collections::HashSet;
use std::time::Duration;

/// A backend whose recall and cost are formulas of the config, whose builds take
/// `build_secs` of (paused) tokio time per m×efC unit (or per `m^a · efC^b` with
/// `build_law`), and whose interleaved latencies
/// are the cost times seeded noise.
struct Fake {
    built: HashSet<(crate::params::GraphId, Option<usize>)>,
    journal: Vec<Recorded>,
    incumbent: Option<(Uuid, HnswConfig)>,
    promoted: Vec<HnswConfig>,
    rng: SplitMix64,
    noise: f64,
    cancel_after: Option<usize>,
    measured: usize,
    build_secs: f64,
    /// Exponents of `m` and `ef_construction` in a build's time (1, 1: per unit).
    build_law: (f64, f64),
    /// Held-out queries are harder by this much recall.
    held_out_penalty: f64,
    /// Interleaved latencies of SQ8 configs are scaled by this (narrow vectors: above 1).
    sq8_factor: f64,
    /// Latency and recall of SQ4 against the shared surface's.
    sq4_factor: f64,
    sq4_recall: f64,
    /// RaBitQ's latency factor (1.0: as none).
    rabitq_factor: f64,
    /// Misses scaled by this (a harder index: above 1).
    difficulty: f64,
    /// Live rows of the index.
    rows: usize,
    /// The sample measured on, if any.
    scope: Option<usize>,
    /// Misses on a sample scaled by this (a sample is easier: below 1).
    sample_ease: f64,
    /// Every scope switch asked for.
    scopes: Vec<Option<usize>>,
    /// A second instance building what the run offers, one graph at a time (`None`: alone).
    helper: Option<Helper>,
    /// The builder of a sample's graphs, as [`Backend::scope`] reports it.
    sample_engine: Engine,
}

/// Another instance of the fleet, simulated: it takes offered full-index graphs the run
/// has not claimed, the one needed last first (the run builds from the front), one at a time, each as long as the run's own build
/// of it would take (events computed lazily from their times).
#[derive(Default)]
struct Helper {
    /// When it is free for its next item.
    free_at: Option<tokio::time::Instant>,
    /// Offered and not yet taken by either side: graph, when offered, build seconds.
    queue: Vec<(crate::params::GraphId, tokio::time::Instant, f64)>,
    /// Taken by the helper: when each build ends.
    taken: std::collections::HashMap<crate::params::GraphId, tokio::time::Instant>,
    /// Every offer, as made.
    offers: Vec<Vec<HnswConfig>>,
    /// Graphs the run loaded instead of building.
    loaded: usize,
}

impl Helper {
    /// Takes what the helper would have started by `now`.
    fn advance(&mut self, now: tokio::time::Instant) {
        while let Some(&(id, offered, secs)) = self.queue.last() {
            // it looks for offers once a second (the worker's poll)
            let seen = offered + Duration::from_secs(1);
            let start = self.free_at.map_or(seen, |f| f.max(seen));
            if start > now {
                return;
            }
            self.queue.pop();
            let end = start + Duration::from_secs_f64(secs);
            self.taken.insert(id, end);
            self.free_at = Some(end);
        }
    }
}

impl Fake {
    /// Seconds of a full build of `c`'s graph.
    fn build_of(&self, c: &HnswConfig) -> f64 {
        let (a, b) = self.build_law;
        self.build_secs * f64::from(c.m).powf(a) * f64::from(c.ef_construction).powf(b)
    }

    fn new(seed: u64) -> Fake {
        Fake {
            built: HashSet::new(),
            journal: Vec::new(),
            incumbent: None,
            promoted: Vec::new(),
            rng: SplitMix64::new(seed),
            noise: 0.3,
            cancel_after: None,
            measured: 0,
            build_secs: 1e-4,
            build_law: (1.0, 1.0),
            held_out_penalty: 0.0,
            sq8_factor: 1.0,
            sq4_factor: 1.0,
            sq4_recall: 0.0,
            rabitq_factor: 1.0,
            difficulty: 1.0,
            rows: 1000,
            scope: None,
            sample_ease: 0.5,
            scopes: Vec::new(),
            helper: None,
            sample_engine: Engine::NativeSq8,
        }
    }
}

impl Fake {
    /// The latency factor of a config's quantization on top of the shared surface's cost.
    fn factor(&self, c: &HnswConfig) -> f64 {
        match c.quantization {
            crate::params::Quantization::Sq8 => self.sq8_factor,
            crate::params::Quantization::Sq4 => self.sq4_factor,
            crate::params::Quantization::Rabitq => self.rabitq_factor,
            crate::params::Quantization::None => 1.0,
        }
    }

    /// The shared surface, with SQ4's recall moved by `sq4_recall`.
    fn recall(&self, c: &HnswConfig) -> f64 {
        // the graph's misses scaled by the difficulty, the quantization's factor kept
        let graph = recall(&c.with_quantization(crate::params::Quantization::None));
        let difficulty = self.difficulty
            * if self.scope.is_some() {
                self.sample_ease
            } else {
                1.0
            };
        recall(c) / graph * (1.0 - (1.0 - graph) * difficulty)
            + if c.quantization == crate::params::Quantization::Sq4 {
                self.sq4_recall
            } else {
                0.0
            }
    }
}

fn metrics(c: &HnswConfig, recall: f64, build: f64) -> TrialMetrics {
    let found = (recall * 1000.0).round() as usize;
    TrialMetrics {
        build_time_secs: build,
        search_latency_p50_us: cost(c) * 0.1,
        search_latency_p95_us: cost(c) * 0.2,
        search_latency_p99_us: cost(c) * 0.3,
        recall_at_k: recall,
        memory_bytes: 1000 * c.m as u64,
        vectors: 1000,
        eval_queries: 100,
        brute_force_latency_us: 100.0,
        recall_ci_low: crate::stats::wilson_lower(found, 1000),
        distance_evals_per_query: cost(c),
        search_latency_mean_us: cost(c) * 0.1,
        qps: 1.0,
        recall_p10: (recall - 0.02f64.min(1.0 - recall).min(recall)).max(0.0),
        // 400 queries around the recall, a little spread: the confident gate's input
        per_query_recall: (0..400)
            .map(|q| {
                let d = 0.02f64.min(1.0 - recall).min(recall);
                (if q % 2 == 0 { recall + d } else { recall - d }) as f32
            })
            .collect(),
    }
}

impl Backend for Fake {
    type Error = String;
    async fn measure(&mut self, c: HnswConfig, held_out: bool) -> Result<Option<TrialMetrics>, String> {
        if self.cancel_after.is_some_and(|n| self.measured >= n) {
            return Ok(None);
        }
        self.measured += 1;
        // a sample's builds are cheaper by the forecast's size law, and by their builder's
        let scale = self.scope.map_or(1.0, |s| {
            use crate::autotune::forecast::{builder_scale, size_scale};
            1.0 / (size_scale(s, self.rows) * builder_scale(self.sample_engine, Engine::Native))
        });
        let build = self.build_of(&c) * scale;
        // a twin in another quantization is derived from the links held, as the tuner does
        // (graphs of the sample and of the full index are different builds)
        if self.built.insert((c.links_id(Engine::Native), self.scope)) {
            // started elsewhere: waited for; otherwise claimed and built here
            let id = c.links_id(Engine::Native);
            let mut elsewhere = None;
            if let Some(h) = self.helper.as_mut().filter(|_| self.scope.is_none()) {
                h.advance(tokio::time::Instant::now());
                elsewhere = h.taken.get(&id).copied();
                h.queue.retain(|(q, _, _)| *q != id);
                h.loaded += usize::from(elsewhere.is_some());
            }
            match elsewhere {
                Some(end) => tokio::time::sleep_until(end).await,
                None => tokio::time::sleep(Duration::from_secs_f64(build)).await,
            }
        }
        let r = self.recall(&c) - if held_out { self.held_out_penalty } else { 0.0 };
        let mut m = metrics(&c, r.max(0.0), build);
        let f = self.factor(&c);
        m.search_latency_p50_us *= f;
        m.search_latency_p95_us *= f;
        m.search_latency_p99_us *= f;
        m.search_latency_mean_us *= f;
        Ok(Some(m))
    }
    async fn paired(&mut self, configs: &[HnswConfig], rounds: usize) -> Result<Option<Paired>, String> {
        let n = 100;
        let mut latency_us = Vec::new();
        let mut found = Vec::new();
        for c in configs {
            let base = cost(c) * 0.1 * self.factor(c);
            let mut l = Vec::new();
            for q in 0..n {
                let z: f64 = (0..12)
                    .map(|_| (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
                    .sum::<f64>()
                    - 6.0;
                l.push(base * (1.0 + (q % 5) as f64 * 0.1) * (z * self.noise).exp());
            }
            latency_us.push(l);
            found.push(vec![(self.recall(c) * 1000.0).round() as u32; n]);
        }
        Ok(Some(Paired {
            latency_us,
            found,
            slots: vec![1000; n],
            rounds,
        }))
    }
    async fn record(&mut self, t: Recorded) -> Result<(), String> {
        self.journal.push(t);
        Ok(())
    }
    async fn incumbent(&mut self) -> Result<Option<(Uuid, HnswConfig)>, String> {
        Ok(self.incumbent)
    }
    async fn promote(&mut self, w: &Candidate) -> Result<(), String> {
        self.promoted.push(w.config);
        self.incumbent = Some((w.trial_id, w.config));
        Ok(())
    }
    fn builds(&self) -> usize {
        self.built.len()
    }
    fn rows(&self) -> usize {
        self.rows
    }
    async fn scope(&mut self, sample: Option<usize>) -> Result<Option<Engine>, String> {
        self.scopes.push(sample);
        self.scope = sample;
        // as the service: a sample's graphs on its builder (SQ8 codes unless a test says
        // otherwise), the full index's on the index's
        Ok(Some(match sample {
            Some(_) => self.sample_engine,
            None => Engine::Native,
        }))
    }
    async fn prefetch(&mut self, configs: &[HnswConfig]) -> Result<(), String> {
        let secs: Vec<f64> = configs.iter().map(|c| self.build_of(c)).collect();
        let (built, scope) = (&self.built, self.scope);
        let Some(h) = self.helper.as_mut() else {
            return Ok(());
        };
        h.offers.push(configs.to_vec());
        if scope.is_some() {
            return Ok(()); // only full-index builds are offered
        }
        let now = tokio::time::Instant::now();
        h.advance(now);
        // offers no longer wanted are withdrawn unless taken, as the tuner does
        let wanted: Vec<_> = configs.iter().map(|c| c.links_id(Engine::Native)).collect();
        h.queue.retain(|(q, _, _)| wanted.contains(q));
        for (c, secs) in configs.iter().zip(secs) {
            let id = c.links_id(Engine::Native);
            if built.contains(&(id, None)) || h.taken.contains_key(&id) || h.queue.iter().any(|q| q.0 == id) {
                continue;
            }
            h.queue.push((id, now, secs));
        }
        Ok(())
    }
    fn builds_elsewhere(&self) -> usize {
        self.helper.as_ref().map_or(0, |h| h.loaded)
    }
    fn cancelled(&self) -> bool {
        false
    }
    fn progress(&mut self, _: usize) {}
}

fn raw(c: HnswConfig) -> RawHnswConfig {
    RawHnswConfig {
        ef_construction: c.ef_construction.into(),
        ef_search: c.ef_search.into(),
        m: Some(c.m.into()),
        seed: Some(c.seed),
        quantization: Some(c.quantization),
        patience: Some(c.patience.into()),
    }
}

fn cfg(m: u32, ec: u32, ef: u32) -> HnswConfig {
    HnswConfig {
        m,
        ef_construction: ec,
        ef_search: ef,
        ..HnswConfig::DEFAULT
    }
}

fn setup(defer: bool) -> Setup {
    Setup {
        defer,
        note: "autotune".into(),
        engine: Engine::Native,
        seed: 42,
    }
}

async fn run(b: &mut Fake, f: SpecFields, defer: bool) -> End {
    run_within(b, f, defer, crate::params::Bounds::SEED).await
}

async fn run_within(b: &mut Fake, f: SpecFields, defer: bool, bounds: crate::params::Bounds) -> End {
    let spec = Spec::parse(&f, bounds).unwrap();
    Run::new(b, &spec, setup(defer)).run().await.unwrap()
}

fn finished(e: End) -> Outcome {
    match e {
        End::Finished(o) => *o,
        End::Cancelled { .. } => panic!("cancelled"),
    }
}

fn grid(configs: &[HnswConfig], promote: &str) -> SpecFields {
    SpecFields {
        grid: Some(configs.iter().map(|&c| raw(c)).collect()),
        objective: Some("min_latency".into()),
        target_recall: Some(0.95),
        promote: Some(promote.into()),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_grid_journals_every_trial_and_promotes_the_fastest_passing() {
    let mut b = Fake::new(1);
    let configs = [cfg(16, 80, 10), cfg(16, 80, 30), cfg(16, 80, 60)];
    let o = finished(run(&mut b, grid(&configs, "always"), false).await);
    assert_eq!((o.trials_run, o.builds, b.journal.len()), (3, 1, 3));
    // the winner is the cheapest config the formula passes
    let best = configs
        .iter()
        .filter(|c| recall(c) >= 0.95)
        .min_by(|a, b| cost(a).total_cmp(&cost(b)))
        .copied();
    assert_eq!(o.winner.map(|w| w.config), best);
    assert!(o.promoted && o.refinement.is_none());
    assert_eq!(b.promoted, vec![best.unwrap()]);
}

#[tokio::test(start_paused = true)]
async fn if_better_never_promotes_a_config_over_itself_or_its_twin() {
    let c = cfg(16, 80, 40);
    // a twin: another seed, the same cost: equal within noise, never "better"
    let twin = HnswConfig { seed: 7, ..c };
    for run_no in 0..20 {
        let mut b = Fake::new(run_no);
        b.incumbent = Some((Uuid::nil(), c));
        let o = finished(run(&mut b, grid(&[c], "if_better"), false).await);
        assert!(!o.promoted, "run {run_no}: {:?}", o.reason);
        assert!(o.reason.unwrap().contains("itself"));
        let o = finished(run(&mut b, grid(&[twin], "if_better"), false).await);
        assert!(!o.promoted, "run {run_no}: {:?}", o.reason);
        assert!(o.reason.as_deref().unwrap().starts_with("kept"), "{:?}", o.reason);
    }
}

#[tokio::test(start_paused = true)]
async fn if_better_promotes_half_the_distance_evaluations() {
    let slow = cfg(32, 80, 60);
    let fast = cfg(16, 80, 60);
    for run_no in 0..5 {
        let mut b = Fake::new(100 + run_no);
        b.incumbent = Some((Uuid::nil(), slow));
        let o = finished(run(&mut b, grid(&[fast], "if_better"), false).await);
        let why = o.reason.unwrap();
        assert!(
            o.promoted && why.starts_with("promoted: latency \u{2212}"),
            "{why}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn adaptive_refines_below_the_climb_rungs_within_max_trials() {
    let mut b = Fake::new(3);
    // the literal rule by name: this test checks recall against the journal's figures
    let f = SpecFields {
        strategy: Some("adaptive".into()),
        objective: Some("min_latency".into()),
        target_recall: Some(0.975),
        gate: Some("point".into()),
        promote: Some("never".into()),
        ..Default::default()
    };
    let o = finished(run(&mut b, f, false).await);
    let r = o.refinement.unwrap();
    assert!(r.trials > 0 && o.trials_run <= 40, "{o:?}");
    assert_eq!(
        b.journal.iter().filter(|t| t.note.contains("refinement")).count(),
        r.trials
    );
    let w = o.winner.unwrap();
    assert!(recall(&w.config) >= 0.975);
    // the winner's ef is off the ladder or its graph between rungs: refinement paid
    let climb_best = b
        .journal
        .iter()
        .filter(|t| !t.note.contains("refinement") && t.metrics.recall_at_k >= 0.975)
        .map(|t| cost(&t.config))
        .fold(f64::INFINITY, f64::min);
    let seen: Vec<String> = b
        .journal
        .iter()
        .map(|t| {
            format!(
                "{}/{}/{}/{:?}:{:.3}:{}",
                t.config.m,
                t.config.ef_construction,
                t.config.ef_search,
                t.config.quantization,
                t.metrics.recall_at_k,
                t.note
            )
        })
        .collect();
    assert!(
        cost(&w.config) < climb_best,
        "{:?} vs {climb_best}: {seen:#?}",
        w.config
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_the_climb_on_the_paused_clock() {
    let mut b = Fake::new(4);
    b.build_secs = 0.01; // m16 efC80: 12.8 s per build
    let f = SpecFields {
        strategy: Some("adaptive".into()),
        objective: Some("min_latency".into()),
        budget_secs: Some(30.0),
        promote: Some("never".into()),
        ..Default::default()
    };
    let started = Instant::now();
    let o = finished(run(&mut b, f, false).await);
    // the build forecast is exact here, so no build starts that would overrun
    assert!(
        started.elapsed() <= Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(o.trials_run < 40 && o.builds >= 1, "{o:?}");
}

/// A hard index (misses ×200: .95 needs an ef past 200 on every graph the seed's bounds
/// allow): within the seed's bounds the adaptive run ends without a winner and says so with
/// the best recall it saw and the bounds; with raised bounds the same run climbs past them
/// and promotes a config the seed's bounds could not hold.
#[tokio::test(start_paused = true)]
async fn a_hard_index_needs_raised_bounds_and_a_run_without_them_says_how_far_it_got() {
    let spec = || SpecFields {
        promote: Some("always".into()),
        ..adaptive(0.95, Some("point"))
    };
    let mut b = Fake::new(6);
    b.difficulty = 200.0;
    let o = finished(run(&mut b, spec(), false).await);
    assert!(o.winner.is_none() && !o.promoted, "{o:?}");
    let best = o.best_recall.unwrap();
    assert!(
        best < 0.95 && best > 0.5,
        "{best} {:?}",
        b.journal
            .iter()
            .map(|t| (t.config.describe(), t.metrics.recall_at_k))
            .collect::<Vec<_>>()
    );
    let why = o.reason.unwrap();
    assert!(
        why.contains(&format!("best recall seen {best:.4}"))
            && why.contains("ef_search <= 200, ef_construction <= 400, m <= 64")
            && why.contains("tuning.max_ef_search"),
        "{why}"
    );
    assert!(b
        .journal
        .iter()
        .all(|t| t.config.ef_search <= 200 && t.config.m <= 64));

    let raised = crate::params::Bounds::raised(1600, 2000, 128).unwrap();
    let mut b = Fake::new(6);
    b.difficulty = 200.0;
    let o = finished(run_within(&mut b, spec(), false, raised).await);
    let w = o.winner.expect("a winner within the raised bounds");
    assert!(o.promoted && w.recall_at_k >= 0.95, "{w:?}");
    let c = w.config;
    assert!(
        c.ef_search > 200 || c.ef_construction > 400 || c.m > 64,
        "beyond the seed's bounds: {c:?}"
    );
    assert!(b
        .journal
        .iter()
        .all(|t| t.config.ef_search <= 2000 && t.config.m <= 128 && t.config.ef_construction <= 1600));
}

#[tokio::test(start_paused = true)]
async fn a_memory_cap_leaves_nothing_eligible_and_says_memory() {
    let mut b = Fake::new(5);
    let mut f = grid(&[cfg(16, 80, 30), cfg(8, 80, 30)], "always");
    f.max_memory_bytes = Some(1000);
    let o = finished(run(&mut b, f, false).await);
    assert_eq!((o.trials_eligible, o.promoted), (0, false));
    assert!(o.winner.is_none() && o.reason.unwrap().contains("memory"));
    assert_eq!(o.ineligible.len(), 2);
    assert!(b.journal.iter().all(|t| t.note.contains("ineligible: memory")));
}

#[tokio::test(start_paused = true)]
async fn held_out_queries_defer_the_journal_and_validate_the_winner() {
    let mut b = Fake::new(6);
    b.held_out_penalty = 0.001;
    let o = finished(run(&mut b, grid(&[cfg(16, 80, 30), cfg(16, 80, 60)], "never"), true).await);
    let w = o.winner.unwrap();
    let v = w.validation.clone().unwrap();
    assert!((v.recall_at_k - (recall(&w.config) - 0.001)).abs() < 1e-9);
    let journaled: Vec<_> = b.journal.iter().filter(|t| t.validation.is_some()).collect();
    assert_eq!(journaled.len(), 1);
    assert_eq!(journaled[0].id, w.trial_id);
}

#[tokio::test(start_paused = true)]
async fn a_grid_winner_is_the_grid_rule_s_and_its_validation_is_reported() {
    let mut b = Fake::new(8);
    // ef 20 passes .95 on the tuning queries by .015, ef 40 by .03; held out is .02 harder
    b.held_out_penalty = 0.02;
    let (lo, hi) = (cfg(4, 20, 20), cfg(4, 20, 40));
    assert!(recall(&lo) >= 0.95 && recall(&lo) - 0.02 < 0.95 && recall(&hi) - 0.02 >= 0.95);
    let o = finished(run(&mut b, grid(&[lo, hi], "never"), true).await);
    assert_eq!(o.winner.as_ref().map(|w| w.config), Some(lo));
    assert_eq!((o.validations, o.trials_eligible), (1, 2));
    assert!(o.winner.unwrap().validation.unwrap().recall_at_k < 0.95);
}

/// An adaptive `min_latency` run to `target` under the literal `point` gate, 20 % of its
/// queries held out: the held-out walk on a fake whose held-out share is harder.
fn held_out_walk(target: f64) -> SpecFields {
    SpecFields {
        strategy: Some("adaptive".into()),
        objective: Some("min_latency".into()),
        target_recall: Some(target),
        gate: Some("point".into()),
        validation_fraction: Some(0.2),
        promote: Some("never".into()),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_winner_must_also_pass_on_the_held_out_queries() {
    let mut b = Fake::new(9);
    b.held_out_penalty = 0.01;
    let o = finished(run(&mut b, held_out_walk(0.975), true).await);
    let w = o.winner.clone().unwrap();
    assert!(w.validation.as_ref().unwrap().recall_at_k >= 0.975, "{w:?}");
    assert!(
        o.validations >= 2,
        "the thin-margin winners were checked first: {o:?}"
    );
    let out: Vec<_> = o
        .ineligible
        .iter()
        .filter(|i| i.reason.contains("held-out"))
        .collect();
    assert_eq!(out.len(), o.validations - 1);
    // every disqualified trial says so in the journal; the winner is the fastest of the rest
    for i in &out {
        let t = b.journal.iter().find(|t| t.id == i.trial_id).unwrap();
        assert!(
            t.note
                .contains("ineligible: misses the recall bar on the held-out"),
            "{}",
            t.note
        );
    }
    let best_left = b
        .journal
        .iter()
        .filter(|t| t.metrics.recall_at_k >= 0.975 && !out.iter().any(|i| i.trial_id == t.id))
        .map(|t| t.metrics.search_latency_p50_us)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(w.search_latency_p50_us, best_left);
    assert_eq!(
        o.trials_eligible,
        b.journal
            .iter()
            .filter(|t| t.metrics.recall_at_k >= 0.975)
            .count()
            - out.len()
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_out_miss_steps_the_same_graph_up_in_ef_before_falling_back_to_slower_ones() {
    // held out is .03 harder: every rung the climb and refinement chose just over the bar
    // misses there, and only more ef on a graph (never measured yet) passes
    let mut b = Fake::new(12);
    b.held_out_penalty = 0.03;
    let o = finished(run(&mut b, held_out_walk(0.95), true).await);
    let w = o.winner.clone().unwrap();
    assert!(w.validation.as_ref().unwrap().recall_at_k >= 0.95, "{w:?}");
    let stepped: Vec<&Recorded> = b
        .journal
        .iter()
        .filter(|t| t.note.contains("held-out step"))
        .collect();
    assert!(
        !stepped.is_empty(),
        "{:?}",
        b.journal.iter().map(|t| &t.note).collect::<Vec<_>>()
    );
    // known truth: the cheapest config of any graph the run built that holds the bar on
    // the held-out queries (every ef within the bounds); the winner is within 10 % of it
    let graphs: Vec<HnswConfig> = b.journal.iter().map(|t| t.config).collect();
    let oracle = graphs
        .iter()
        .flat_map(|g| (1..=200).map(move |ef| HnswConfig { ef_search: ef, ..*g }))
        .filter(|c| b.recall(c) - b.held_out_penalty >= 0.95)
        .map(|c| cost(&c) * b.factor(&c))
        .fold(f64::INFINITY, f64::min);
    let won = cost(&w.config) * b.factor(&w.config);
    assert!(
        won <= oracle * 1.1,
        "winner {:?} costs {won}, the oracle {oracle}",
        w.config
    );
    // each step measured a graph one rung above a rung of it that missed
    for t in &stepped {
        assert!(o.ineligible.iter().any(|i| {
            let m = b.journal.iter().find(|j| j.id == i.trial_id).unwrap();
            m.config.graph_id(Engine::Native) == t.config.graph_id(Engine::Native)
                && m.config.ef_search < t.config.ef_search
                && i.reason.contains("held-out")
        }));
    }
}

#[tokio::test(start_paused = true)]
async fn near_ties_are_reported_against_the_winner_not_acted_on() {
    let mut b = Fake::new(10);
    // the same cost in three graphs: within noise of each other
    let configs = [
        cfg(16, 80, 40),
        HnswConfig {
            seed: 7,
            ..cfg(16, 80, 40)
        },
        cfg(32, 80, 20),
    ];
    let o = finished(run(&mut b, grid(&configs, "never"), false).await);
    let w = o.winner.unwrap();
    assert_eq!(
        w.config, configs[0],
        "ties broken by the earlier trial, as the rule says"
    );
    assert_eq!(o.near_ties.len(), 2, "{:?}", o.near_ties);
    for t in &o.near_ties {
        assert!(t.low < 1.0 && t.high > 1.0, "{t:?}");
        assert!(t.latency_vs_winner.contains('['));
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancel_keeps_what_was_measured_and_promotes_nothing() {
    let mut b = Fake::new(7);
    b.cancel_after = Some(2);
    let configs = [cfg(16, 80, 10), cfg(16, 80, 30), cfg(16, 80, 60)];
    let e = run(&mut b, grid(&configs, "always"), false).await;
    assert_eq!(e, End::Cancelled { trials_run: 2 });
    assert_eq!(b.journal.len(), 2);
    assert!(b.promoted.is_empty());
}

/// An adaptive `min_latency` dry run at `target`, under `gate` (`None`: the default).
fn adaptive(target: f64, gate: Option<&str>) -> SpecFields {
    SpecFields {
        strategy: Some("adaptive".into()),
        objective: Some("min_latency".into()),
        target_recall: Some(target),
        gate: gate.map(str::to_string),
        promote: Some("never".into()),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_confident_gate_is_the_default_of_min_latency_and_says_how_it_judged() {
    let mut b = Fake::new(5);
    let o = finished(run(&mut b, adaptive(0.95, None), false).await);
    let w = o.winner.unwrap();
    let a = w.assurance.clone().expect("the winner says how it was judged");
    assert_eq!(a.gate, "confident");
    assert_eq!(a.method.as_deref(), Some(crate::autotune::assure::METHOD));
    assert!(a.recall_ci_low.unwrap() >= 0.95, "{a:?}");
    assert!(a.recall_estimate.unwrap() >= a.recall_ci_low.unwrap(), "{a:?}");
    assert_eq!(a.queries, Some(400));
    assert!(a.graphs_compared.unwrap() >= 1);
    assert_eq!(a.near_ties_compared, Some(o.near_ties.len() as u64));
    // the bound is below the point estimate: the winner clears the target by a margin
    assert!(recall(&w.config) > 0.95, "{:?}", w.config);
    // point and wilson by name keep their rules, and say so
    for gate in ["point", "wilson"] {
        let mut b = Fake::new(5);
        let w = finished(run(&mut b, adaptive(0.95, Some(gate)), false).await)
            .winner
            .unwrap();
        let a = w.assurance.unwrap();
        assert_eq!(a.gate, gate);
        assert_eq!(a.method, None);
        assert_eq!(a.recall_estimate, Some(w.recall_at_k));
        assert_eq!(a.recall_ci_low, (gate == "wilson").then_some(w.recall_ci_low));
    }
}

/// The same request on the same data gives the same winner whatever the noise of the
/// interleaved comparisons (three seeds): eligibility, steering and the rung rule are
/// noise-free, and near-ties are decided above the noise or by the cheaper graph.
#[tokio::test(start_paused = true)]
async fn the_confident_pick_is_the_same_run_after_run() {
    let mut winners = Vec::new();
    for seed in [1, 2, 3] {
        let mut b = Fake::new(seed);
        let w = finished(run(&mut b, adaptive(0.95, None), false).await)
            .winner
            .unwrap();
        // the lowest passing rung of its graph: no higher ef of the same graph won
        assert!(b.journal.iter().all(|t| t.config.graph_id(Engine::Native)
            != w.config.graph_id(Engine::Native)
            || t.config.ef_search >= w.config.ef_search
            || recall(&t.config) < 0.95));
        winners.push(w.config);
    }
    assert!(winners.iter().all(|w| *w == winners[0]), "{winners:?}");
}

/// The climb searches the quantization (f32 or sq8) the paired comparison after its first
/// trial shows faster, and says so in that trial's note; without a clear difference, or
/// under a memory cap (where the codes' bytes could decide eligibility), it keeps f32.
/// Refinement then probes the winner's sq4 and rabitq twins (no build), each of which wins
/// where it serves the chosen graph faster.
#[tokio::test(start_paused = true)]
async fn the_climb_searches_the_quantization_the_paired_comparison_shows_faster() {
    use crate::params::Quantization as Q;
    // the fake's SQ8 costs 0.8 of f32, SQ4 0.7 and RaBitQ 1.0, each times its factor
    for (sq8, sq4, sq4_recall, rabitq, cap, climb, winner) in [
        (1.0, 1.0, 0.0, 1.0, None, Q::Sq8, Some(Q::Sq4)),
        (1.0, 1.5, 0.0, 1.0, None, Q::Sq8, Some(Q::Sq8)), // SQ4 1.05 of f32
        (1.0, 1.0, -0.03, 1.0, None, Q::Sq8, None),       // SQ4 faster, but finds less
        (1.5, 1.5, 0.0, 1.0, None, Q::None, Some(Q::None)), // 1.2 and 1.05 of f32: narrow vectors
        (1.0, 1.0, 0.0, 1.0, Some(i64::MAX), Q::None, None),
        (1.0, 1.0, 0.0, 0.5, None, Q::Sq8, Some(Q::Rabitq)), // blocks: half of f32 (large sets)
    ] {
        let mut b = Fake::new(5);
        (b.sq8_factor, b.sq4_factor, b.sq4_recall, b.rabitq_factor) = (sq8, sq4, sq4_recall, rabitq);
        let mut f = adaptive(0.95, None);
        f.max_memory_bytes = cap;
        let o = finished(run(&mut b, f, false).await);
        let first = &b.journal[0];
        assert_eq!(first.config.quantization, Q::None);
        match cap {
            None => assert!(
                first.note.contains("sq8 against none") && !first.note.contains("sq4"),
                "{}",
                first.note
            ),
            Some(_) => assert!(!first.note.contains("quantization"), "{}", first.note),
        }
        let climbed = b.journal[1..].iter().filter(|t| !t.note.contains("refinement"));
        assert!(
            climbed.clone().all(|t| t.config.quantization == climb),
            "{sq8} {sq4} {sq4_recall}: {:?}",
            b.journal
                .iter()
                .map(|t| (t.config, t.note.clone()))
                .collect::<Vec<_>>()
        );
        // refinement probes the quantizations the climb did not compare
        let refined: Vec<Q> = b
            .journal
            .iter()
            .filter(|t| t.note.contains("refinement"))
            .map(|t| t.config.quantization)
            .collect();
        assert!(
            refined.contains(&Q::Sq4) && refined.contains(&Q::Rabitq),
            "{refined:?}"
        );
        if let Some(w) = winner {
            assert_eq!(
                o.winner.map(|w| w.config.quantization),
                Some(w),
                "{sq8} {sq4} {sq4_recall}"
            );
        }
    }
}

mod fleet;
mod sample;
