//! Builds spread over the fleet, simulated: a second instance builds the graphs the run
//! offers ([`Backend::prefetch`]), one at a time, as long as the run's own build would take;
//! the run waits for a graph started there and builds the rest itself. Known truth: the
//! fake's surface decides the same winner either way, so only the wall may change.

use super::*;

fn helped(mut b: Fake) -> Fake {
    b.helper = Some(Helper::default());
    b
}

/// The run's wall on the paused clock, its outcome and its backend.
async fn timed(mut b: Fake, f: SpecFields) -> (f64, Outcome, Fake) {
    let t = Instant::now();
    let o = finished(run(&mut b, f, false).await);
    (t.elapsed().as_secs_f64(), o, b)
}

#[tokio::test(start_paused = true)]
async fn a_grid_offers_every_graph_before_its_first_build_and_two_instances_take_about_half_the_wall() {
    // six graphs of about one build's cost each: the run builds from the front, the
    // helper from the back, and they meet in the middle
    let graphs = [
        cfg(8, 160, 60),
        cfg(16, 80, 60),
        cfg(10, 128, 60),
        cfg(20, 64, 60),
        cfg(32, 40, 60),
        cfg(40, 32, 60),
    ];
    // every graph at two ef_search: one offer per graph
    let configs: Vec<HnswConfig> = graphs
        .iter()
        .flat_map(|&g| [g, HnswConfig { ef_search: 120, ..g }])
        .collect();
    let mut alone = Fake::new(3);
    alone.build_secs = 0.05;
    let mut two = helped(Fake::new(3));
    two.build_secs = 0.05;
    let (wall1, o1, _) = timed(alone, grid(&configs, "never")).await;
    let (wall2, o2, b) = timed(two, grid(&configs, "never")).await;
    let h = b.helper.as_ref().unwrap();
    assert_eq!(h.offers.len(), 1, "a grid offers once, at the start");
    assert_eq!(h.offers[0].len(), configs.len());
    assert_eq!(
        o1.winner.as_ref().map(|w| w.config),
        o2.winner.as_ref().map(|w| w.config),
        "the same winner"
    );
    assert_eq!(
        (o1.builds, o2.builds),
        (6, 6),
        "every graph counted once, wherever built"
    );
    assert_eq!((o1.builds_elsewhere, o2.builds_elsewhere), (0, h.loaded));
    assert!(o2.builds_elsewhere >= 1, "{o2:?}");
    eprintln!(
        "grid: two instances {wall2:.1} s vs one {wall1:.1} s = {:.3}",
        wall2 / wall1
    );
    // the builds are the wall; the second instance takes about half of them
    assert!(
        wall2 <= 0.6 * wall1,
        "two instances {wall2:.1} s vs one {wall1:.1} s"
    );
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_climb_offers_its_next_graphs_and_finds_the_same_winner_sooner() {
    let mut alone = Fake::new(9);
    alone.build_secs = 0.02;
    let mut two = helped(Fake::new(9));
    two.build_secs = 0.02;
    let (wall1, o1, _) = timed(alone, adaptive(0.95, None)).await;
    let (wall2, o2, b) = timed(two, adaptive(0.95, None)).await;
    let h = b.helper.as_ref().unwrap();
    // before its first build the climb offers the coarse pass's other graphs
    let first = &h.offers[0];
    assert!(first.len() <= PREFETCH);
    assert!(first.iter().take(2).all(|c| c.ef_construction == 80), "{first:?}");

    assert!(h.offers.iter().all(|o| o.len() <= PREFETCH));
    assert_eq!(
        o1.winner.as_ref().map(|w| w.config),
        o2.winner.as_ref().map(|w| w.config),
        "the same winner"
    );
    assert!(o2.builds_elsewhere >= 1, "{o2:?}");
    eprintln!(
        "adaptive: two instances {wall2:.1} s vs one {wall1:.1} s = {:.3}",
        wall2 / wall1
    );
    assert!(wall2 < wall1, "two instances {wall2:.1} s vs one {wall1:.1} s");
}

#[tokio::test(start_paused = true)]
async fn a_sampled_run_offers_only_its_full_builds() {
    let mut b = helped(Fake::new(11));
    b.rows = 1_000_000;
    b.build_secs = 80.0 / (16.0 * 80.0);
    b.noise = 0.05;
    let f = SpecFields {
        budget_secs: Some(1800.0),
        ..adaptive(0.95, None)
    };
    let (_, o, b) = timed(b, f).await;
    let s = o.sample.expect("sampled");
    let h = b.helper.as_ref().unwrap();
    // offered on the sample too (the backend decides), but only the full index's graphs
    // were taken: the helper never built a sample's graph
    let last = h.offers.last().unwrap();
    assert_eq!(
        last.iter()
            .map(|c| c.links_id(Engine::Native))
            .collect::<Vec<_>>(),
        s.leading
            .iter()
            .take(last.len())
            .map(|c| c.links_id(Engine::Native))
            .collect::<Vec<_>>(),
        "the transfer offers its leading graphs"
    );
    assert!(
        h.taken.len() <= last.len(),
        "the helper built only offered full graphs"
    );
}
