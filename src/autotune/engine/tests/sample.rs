//! Sample-and-transfer on the fake backend: a 1M-row index whose sample is easier (half
//! the misses) and whose sample builds are cheaper by the forecast's size law.

use super::*;
use crate::autotune::transfer::SAMPLE_BUDGET_SHARE;

/// A 1M-row fake whose full m 16 / efC 80 build takes 80 s.
fn large(seed: u64) -> Fake {
    let mut b = Fake::new(seed);
    b.rows = 1_000_000;
    b.build_secs = 80.0 / (16.0 * 80.0);
    b.noise = 0.05;
    b
}

fn spec(budget: f64, sample_rows: Option<i64>) -> SpecFields {
    SpecFields {
        budget_secs: Some(budget),
        sample_rows,
        ..adaptive(0.95, None)
    }
}

/// The fake's recall of `c` on the full index and on a sample.
fn recalls(b: &mut Fake, c: &HnswConfig) -> (f64, f64) {
    let scope = b.scope;
    b.scope = None;
    let full = b.recall(c);
    b.scope = Some(1);
    let sample = b.recall(c);
    b.scope = scope;
    (full, sample)
}

/// The first full build's forecast, from the sample's builds, equals its measured time: the
/// fake's builds follow the forecast's laws exactly, so any gap is the forecast's error.
fn assert_forecast_exact(s: &crate::autotune::transfer::SampleReport) {
    let (forecast, measured) = (s.full_build_forecast_secs.unwrap(), s.full_build_secs.unwrap());
    assert!(
        (forecast - measured).abs() < 1e-6 * measured,
        "{:?}: {forecast} vs {measured}",
        s.engine
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_index_is_explored_on_a_sample_and_decided_on_the_full_index() {
    let mut b = large(11);
    let started = Instant::now();
    let o = finished(run(&mut b, spec(1800.0, None), false).await);
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(
        b.scopes,
        vec![Some(100_000), None],
        "a tenth, then the full index"
    );
    let s = o.sample.clone().expect("sampled");
    assert_eq!(
        (s.rows, s.of_rows, s.chosen_by.as_str()),
        (100_000, 1_000_000, "auto")
    );
    // the builds at each size, as the backend saw them
    let full_builds = b.built.iter().filter(|(_, scope)| scope.is_none()).count();
    assert_eq!(s.full_builds, full_builds);
    assert_eq!(s.builds + s.full_builds, o.builds);
    assert!((1..=2).contains(&s.full_builds), "{s:?}");
    assert!(s.builds >= 3, "the climb ran on the sample: {s:?}");
    // the fake's builds follow the forecast's laws exactly: the forecast from the sample is the build
    assert_forecast_exact(&s);
    // the transfer error is the fake's own: the sample halves the misses
    let t = s
        .transfer
        .clone()
        .expect("the first leading config measured on both");
    let (full, sample) = recalls(&mut b, &t.config);
    assert!(
        (t.sample_recall - sample).abs() < 1e-9 && (t.full_recall - full).abs() < 1e-9,
        "{t:?}"
    );
    assert!(t.error() > 0.0, "the full index is harder: {t:?}");
    // the winner passes on the full index
    let w = o.winner.clone().expect("a winner");
    let (full, _) = recalls(&mut b, &w.config);
    assert!(full >= 0.95 && w.recall_at_k == full, "{w:?}");
    // the sample ranks graphs at a stricter bar (.975): it misses half as many here
    assert!(t.sample_recall >= 0.975 - 1e-9, "{t:?}");
    // the winner is a leading graph, in its own quantization or a twin's (measured on
    // the full index: no build)
    assert!(s
        .leading
        .iter()
        .any(|l| l.links_id(Engine::Native) == w.config.links_id(Engine::Native)));
    // only the full index's trials are journaled, and every one is a full measurement
    assert_eq!(b.journal.len(), o.trials_run);
    let journaled: Vec<(HnswConfig, f64)> = b
        .journal
        .iter()
        .map(|r| (r.config, r.metrics.recall_at_k))
        .collect();
    for (c, r) in journaled {
        let (full, _) = recalls(&mut b, &c);
        assert!((r - full).abs() < 1e-9, "{c:?}");
    }
    // the budget held (the paused clock counts the builds' seconds)
    assert!(wall <= 1800.0 * 1.1, "{wall}");
    // tuned whole instead: many full builds, far more time
    let mut whole = large(11);
    let started = Instant::now();
    let w2 = finished(run(&mut whole, spec(1e6, Some(0)), false).await);
    let whole_wall = started.elapsed().as_secs_f64();
    assert!(whole.scopes.is_empty() && w2.sample.is_none());
    assert!(
        w2.builds > 2 * s.full_builds,
        "{} vs {}",
        w2.builds,
        s.full_builds
    );
    assert!(
        wall < whole_wall / 2.0,
        "sampled {wall:.0} s, whole {whole_wall:.0} s"
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_request_samples_the_same_way_and_finds_the_same_winner() {
    let pick = |seed| async move {
        let mut b = large(seed);
        let o = finished(run(&mut b, spec(1800.0, Some(50_000)), false).await);
        (o.sample.unwrap(), o.winner.unwrap().config)
    };
    let (s1, w1) = pick(3).await;
    let (s2, w2) = pick(3).await;
    assert_eq!((s1.rows, s1.chosen_by.as_str()), (50_000, "request"));
    assert_eq!((s1.leading, w1), (s2.leading, w2));
}

#[tokio::test(start_paused = true)]
async fn a_budget_too_small_for_the_climb_explores_only_graphs_whose_full_build_fits() {
    // 600 s: 240 s for the sample, ~270 s for the first full build
    let mut b = large(5);
    let started = Instant::now();
    let o = finished(run(&mut b, spec(600.0, None), false).await);
    let wall = started.elapsed().as_secs_f64();
    assert!(wall <= 600.0 * 1.1, "{wall}");
    let s = o.sample.unwrap();
    // every graph the sample explored would have fit as a full build
    let kept = 600.0 * (1.0 - SAMPLE_BUDGET_SHARE) * crate::autotune::transfer::FULL_BUILD_SHARE;
    for (id, scope) in &b.built {
        if scope.is_some() {
            // the fake's full build: build_secs per unit (a sample's is cheaper by the size law)
            let units = f64::from(id.m) * f64::from(id.ef_construction);
            assert!(b.build_secs * units <= kept * 1.0001, "{id:?}");
        }
    }
    assert!(s.full_builds >= 1, "{s:?}");
}

/// Builds that grow slower than `m × ef_construction`, as real ones do (`m^0.26 · efC^0.78`
/// at 1M): the fitted forecast is exact where the per-unit rule (the dearest build per unit,
/// the climb's small first ones) forecast the full build 1.7× long, the sample explores
/// graphs whose full builds that rule put past the budget, and the budget still holds.
#[tokio::test(start_paused = true)]
async fn a_sublinear_build_law_is_fitted_and_the_budget_still_holds() {
    let mut b = large(5);
    b.build_law = (0.3, 0.75);
    // the full m 16 / efC 80 build still takes 80 s
    b.build_secs = 80.0 / (16f64.powf(0.3) * 80f64.powf(0.75));
    let started = Instant::now();
    let o = finished(run(&mut b, spec(600.0, None), false).await);
    let wall = started.elapsed().as_secs_f64();
    assert!(wall <= 600.0 * 1.1, "{wall}");
    let kept = 600.0 * (1.0 - SAMPLE_BUDGET_SHARE) * crate::autotune::transfer::FULL_BUILD_SHARE;
    let explored: Vec<HnswConfig> = b
        .built
        .iter()
        .filter(|(_, scope)| scope.is_some())
        .map(|(id, _)| cfg(id.m, id.ef_construction, 10))
        .collect();
    let units = |c: &HnswConfig| f64::from(c.m) * f64::from(c.ef_construction);
    let per_unit = explored
        .iter()
        .map(|c| b.build_of(c) / units(c))
        .fold(0f64, f64::max);
    let refused: Vec<_> = explored
        .iter()
        .filter(|c| per_unit * units(c) > kept)
        .map(|c| (c.m, c.ef_construction))
        .collect();
    assert!(
        !refused.is_empty(),
        "explored only what the per-unit rule allowed: {explored:?}"
    );
    // the law is exact on the fake: every graph explored would have fit as a full build
    for c in &explored {
        assert!(b.build_of(c) <= kept * 1.0001, "{c:?}");
    }
    assert_forecast_exact(&o.sample.unwrap());
}

/// The run takes the sample's builder from the backend ([`Backend::scope`]), not from a
/// rule of its own: its report names that builder, and the full build's forecast carries
/// that builder's factor (none, for a sample built by the index's own builder) — exact on
/// the fake, where a run that assumed codes would forecast 1.75× long.
#[tokio::test(start_paused = true)]
async fn the_sample_is_built_by_the_builder_the_backend_reports() {
    for engine in [Engine::NativeSq8, Engine::Native] {
        let mut b = large(11);
        b.sample_engine = engine;
        let o = finished(run(&mut b, spec(1800.0, None), false).await);
        let s = o.sample.expect("sampled");
        assert_eq!(s.engine, engine);
        assert_forecast_exact(&s);
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancel_on_the_sample_journals_nothing_and_one_on_the_full_index_keeps_its_trials() {
    let mut b = large(9);
    b.cancel_after = Some(3);
    let e = run(&mut b, spec(1800.0, None), false).await;
    assert_eq!(e, End::Cancelled { trials_run: 0 });
    assert!(b.journal.is_empty() && b.promoted.is_empty());
    // how many measurements the sample takes, then a cancel at the second on the full index
    let mut probe = large(9);
    let o = finished(run(&mut probe, spec(1800.0, None), false).await);
    let on_sample = probe.measured - o.trials_run;
    let mut b = large(9);
    assert!(o.trials_run >= 2, "{o:?}");
    b.cancel_after = Some(on_sample + 1);
    let e = run(&mut b, spec(1800.0, None), false).await;
    let End::Cancelled { trials_run } = e else {
        panic!("cancelled: {e:?}")
    };
    assert_eq!(trials_run, 1);
    assert_eq!(b.journal.len(), trials_run, "the full index's trials are kept");
    assert!(b.promoted.is_empty());
}
