//! Refinement: after the adaptive climb, look between its ladder's rungs so the winner
//! carries only the recall margin the gate asks for.
//!
//! The climb moves on ladders (`ef_search` in ~1.25× steps, `ef_construction` and `m` in
//! ~2× and ~1.5× steps), so its winner passes the gate at the first passing rung, often
//! well past the target (measured on a 24k text set: .961 for a .95 gate, while a config
//! between the rungs passed at .951 and served 1.34× faster). Refinement:
//!
//! 1. bisects `ef_search` over the integers between the winner's last failing and first
//!    passing rung, on the winner's own graph (no build);
//! 2. probes the winner's graph with the other quantization, then the graphs halfway
//!    between the winner's `ef_construction` and its neighbouring rungs, then halfway
//!    between its `m` and the neighbouring `m` rungs, each searched for its least passing `ef_search`
//!    (start at the best ef so far, walk down while it passes, bisect the last step). A
//!    probe whose first failing measurement already costs more distance evaluations than
//!    the best passing config is abandoned: any larger ef costs more still.
//!
//! Pure (no I/O, no clock), like [`super::adaptive`]: the engine asks [`Refiner::next_config`],
//! measures, and reports with [`Refiner::observe`].

use crate::autotune::adaptive::{nearest, Ladders};
use crate::params::EF_SEARCH;
use crate::params::{HnswConfig, Quantization};

const MIN_EF_SEARCH: u32 = EF_SEARCH.0;

/// Refinement trials at most (beside the climb's): about four a probed graph.
pub const MAX_TRIALS: usize = 4 * MAX_PROBES;
/// Graphs probed at most: the winner's twins in the other quantizations (derived from its
/// links, no build), the best so far with early termination (no build), and four ladder
/// neighbours.
pub const MAX_PROBES: usize = Quantization::ALL.len() - 1 + 1 + 4;

/// The `patience` refinement probes (see [`HnswConfig::patience`]): on 100k × 128 (rabitq,
/// m 16) 16 stopped hard queries short of .98 at any ef and 30 held .99 at ef 64 (but at
/// more cost than ef 48 without it); between the two.
pub const PROBE_PATIENCE: u32 = 24;

/// The least passing `ef_search` of one graph, searched over integers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct EfSearch {
    /// Largest ef known to fail.
    lo: Option<u32>,
    /// Smallest ef known to pass.
    hi: Option<u32>,
    /// The first ef to measure.
    start: u32,
    /// Steps up after a failing start.
    ups: u32,
    abandoned: bool,
    /// The largest ef it may measure (the top of the run's ef ladder: its bound).
    max: u32,
}

impl EfSearch {
    fn new(start: u32, lo: Option<u32>, hi: Option<u32>, max: u32) -> EfSearch {
        EfSearch {
            lo,
            hi,
            start: start.clamp(MIN_EF_SEARCH, max),
            ups: 0,
            abandoned: false,
            max,
        }
    }

    fn next(&self) -> Option<u32> {
        if self.abandoned {
            return None;
        }
        match (self.lo, self.hi) {
            (None, None) => Some(self.start),
            (Some(lo), Some(hi)) => (hi > lo + 1).then_some(lo + (hi - lo) / 2),
            // passes: walk down ~20 % while it does
            (None, Some(hi)) => {
                let down = (hi * 4 / 5).max(MIN_EF_SEARCH);
                (down < hi).then_some(down)
            }
            // fails: up ~25 % twice at most
            (Some(lo), None) => {
                let up = (lo * 5 / 4 + 1).min(self.max);
                (self.ups < 2 && up > lo).then_some(up)
            }
        }
    }

    fn observe(&mut self, ef: u32, passes: bool, too_dear: bool) {
        if passes {
            self.hi = Some(self.hi.map_or(ef, |h| h.min(ef)));
        } else {
            if self.hi.is_none() {
                if too_dear {
                    self.abandoned = true;
                }
                if self.lo.is_some() {
                    self.ups += 1;
                }
            }
            self.lo = Some(self.lo.map_or(ef, |l| l.max(ef)));
        }
        if self.lo.is_none() && self.hi == Some(MIN_EF_SEARCH) {
            self.lo = Some(MIN_EF_SEARCH - 1);
        }
    }
}

/// What refinement measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RefineStats {
    /// Trials it measured.
    pub trials: usize,
    /// Graphs it built.
    pub builds: usize,
}

/// The refinement state around one winner.
#[derive(Debug, Clone)]
pub struct Refiner {
    /// The graph under search (its `ef_search` is the one being measured).
    graph: HnswConfig,
    search: EfSearch,
    /// Graphs still to probe, in order.
    probes: Vec<HnswConfig>,
    probed: usize,
    /// The cheapest passing cost so far (distance evaluations per query).
    best_cost: f64,
    /// The best passing ef so far (where the next probe starts).
    best_ef: u32,
    /// The quantization of the best so far (whose exact work `best_cost` counts).
    best_quantization: Quantization,
    trials: usize,
    /// The run's largest ef.
    max_ef: u32,
}

fn between(ladder: &[u32], v: u32) -> Vec<u32> {
    let i = nearest(ladder, v);
    let mut out = Vec::new();
    if i > 0 && ladder[i] == v {
        let mid = (ladder[i - 1] + v) / 2;
        if mid != ladder[i - 1] && mid != v {
            out.push(mid);
        }
    }
    if i + 1 < ladder.len() && ladder[i] == v {
        let mid = (v + ladder[i + 1]) / 2;
        if mid != v && mid != ladder[i + 1] {
            out.push(mid);
        }
    }
    out
}

impl Refiner {
    /// Refinement around `winner` (a passing config at `winner_cost`), whose graph is known
    /// to fail at `failing_ef` (the largest measured failing ef below it), if measured.
    /// `built` says whether a graph is built already (so it is not probed again).
    ///
    /// The probes lie between rungs of `ladders` (the run's, within the server's bounds).
    pub fn new(
        winner: HnswConfig,
        winner_cost: f64,
        failing_ef: Option<u32>,
        twins: &[Quantization],
        ladders: &Ladders,
        built: &dyn Fn(&HnswConfig) -> bool,
    ) -> Refiner {
        // the other quantizations first (unless the climb chose between them already): on
        // wide vectors they move latency most (sq8 reads a quarter of the bytes per visited
        // node, sq4 an eighth), and they are never ladder neighbours the climb has seen
        let mut probes: Vec<HnswConfig> = twins.iter().map(|&q| winner.with_quantization(q)).collect();
        for ec in between(&ladders.ec, winner.ef_construction) {
            probes.push(HnswConfig {
                ef_construction: ec,
                ..winner
            });
        }
        for m in between(&ladders.m, winner.m) {
            probes.push(HnswConfig { m, ..winner });
        }
        probes.retain(|p| !built(p));
        // early termination on the best graph so far, right after the twins (no build):
        // searched for its least passing ef like a graph, and kept only if it passes at
        // less work (it does less per ef, and needs a larger ef for the same recall)
        if winner.patience == 0 {
            let after_twins = probes
                .iter()
                .take_while(|p| p.quantization != winner.quantization)
                .count();
            probes.insert(
                after_twins,
                HnswConfig {
                    patience: PROBE_PATIENCE,
                    ..winner
                },
            );
        }
        probes.truncate(MAX_PROBES);
        probes.reverse(); // popped from the back: first listed, first probed
        let max_ef = ladders.ef.last().copied().unwrap_or(EF_SEARCH.1);
        Refiner {
            max_ef,
            graph: winner,
            search: EfSearch::new(winner.ef_search, failing_ef, Some(winner.ef_search), max_ef),
            probes,
            probed: 0,
            best_cost: winner_cost,
            best_quantization: winner.quantization,
            best_ef: winner.ef_search,
            trials: 0,
        }
    }

    /// The next config to measure, or `None` when refinement is done.
    pub fn next_config(&mut self) -> Option<HnswConfig> {
        if self.trials >= MAX_TRIALS {
            return None;
        }
        loop {
            if let Some(ef) = self.search.next() {
                return Some(HnswConfig {
                    ef_search: ef,
                    ..self.graph
                });
            }
            let mut probe = self.probes.pop()?;
            if probe.patience > 0 {
                // on the twin that is best so far
                probe.quantization = self.best_quantization;
            }
            self.probed += 1;
            self.graph = probe;
            self.search = EfSearch::new(self.best_ef, None, None, self.max_ef);
        }
    }

    /// Reports a measurement of the config [`Refiner::next_config`] gave.
    ///
    /// Costs are compared only where they count the same work: a failing probe is abandoned
    /// as too dear, and a passing one becomes the best, by exact work only against a best of
    /// a comparable quantization (see [`Quantization::work_comparable`]). A RaBitQ twin
    /// counts its whole neighbour lists scored as blocks, so against an SQ winner its count
    /// says nothing about its speed (measured on 100k × 128: the rabitq twin failed at the
    /// winner's ef by .004 at 10.2 µs against the sq8 winner's 15.0, and was abandoned on a
    /// count twice the winner's); it walks up its ef like a failing graph of any kind, and
    /// the final pick compares it by a paired clock.
    pub fn observe(&mut self, config: HnswConfig, passes: bool, cost: f64) {
        self.trials += 1;
        let comparable = config.quantization.work_comparable(self.best_quantization);
        if passes && comparable && cost < self.best_cost {
            self.best_cost = cost;
            self.best_ef = config.ef_search;
            self.best_quantization = config.quantization;
        }
        self.search
            .observe(config.ef_search, passes, comparable && cost >= self.best_cost);
    }

    /// Graphs probed so far.
    pub fn probed(&self) -> usize {
        self.probed
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn cfg(m: u32, ec: u32, ef: u32) -> HnswConfig {
        HnswConfig {
            m,
            ef_construction: ec,
            ef_search: ef,
            ..HnswConfig::DEFAULT
        }
    }

    /// A synthetic surface: recall rises with ef, m and ec (sq8 a little lower); cost ∝ ef·m
    /// (sq8 a little cheaper). The engine's tests use it too.
    pub(crate) fn recall(c: &HnswConfig) -> f64 {
        let q = match c.quantization {
            Quantization::None => 1.0,
            Quantization::Sq8 => 0.995,
            Quantization::Sq4 | Quantization::Rabitq => 0.995,
        };
        q * (1.0 - 3.0 / (c.ef_search as f64 * (c.m as f64).sqrt() * (c.ef_construction as f64).powf(0.25)))
    }

    pub(crate) fn cost(c: &HnswConfig) -> f64 {
        c.ef_search as f64
            * c.m as f64
            * match c.quantization {
                Quantization::None => 1.0,
                Quantization::Sq8 => 0.8,
                Quantization::Sq4 => 0.7,
                Quantization::Rabitq => 1.0,
            }
    }

    fn run(winner: HnswConfig, failing: Option<u32>, target: f64) -> (Vec<HnswConfig>, HnswConfig) {
        let twins: Vec<_> = winner.quantization.twins().collect();
        let mut r = Refiner::new(winner, cost(&winner), failing, &twins, &Ladders::seed(), &|_| {
            false
        });
        let mut seen = Vec::new();
        let mut best = winner;
        while let Some(c) = r.next_config() {
            assert!(!seen.contains(&c), "measured twice: {c:?}");
            seen.push(c);
            let pass = recall(&c) >= target;
            if pass && cost(&c) < cost(&best) {
                best = c;
            }
            r.observe(c, pass, cost(&c));
        }
        assert!(seen.len() <= MAX_TRIALS);
        (seen, best)
    }

    /// The early-termination probe: measured on the winner's graph (no build) right after
    /// the twins, with the best twin's quantization, its ef searched like a graph's; it
    /// becomes the best where it passes at less work and not where it costs more.
    #[test]
    fn patience_is_probed_and_kept_only_where_it_is_cheaper() {
        // patience finds at ef e what the full beam finds at 0.8·e (a larger ef buys it
        // back) and saves work per ef by `saving`
        let surface = |saving: f64| {
            move |c: &HnswConfig| {
                if c.patience > 0 {
                    let narrower = HnswConfig {
                        ef_search: c.ef_search * 4 / 5,
                        ..*c
                    };
                    (recall(&narrower), cost(c) * saving)
                } else {
                    (recall(c), cost(c))
                }
            }
        };
        for (saving, kept) in [(0.6, true), (1.0, false)] {
            let f = surface(saving);
            let w = cfg(16, 80, 40);
            let mut r = Refiner::new(
                w,
                f(&w).1,
                Some(39),
                &[Quantization::Sq8],
                &Ladders::seed(),
                &|_| false,
            );
            let (mut best, mut seen) = (w, Vec::new());
            while let Some(c) = r.next_config() {
                assert!(!seen.contains(&c), "measured twice: {c:?}");
                seen.push(c);
                let (rec, k) = f(&c);
                let pass = rec >= 0.985;
                if pass && k < f(&best).1 {
                    best = c;
                }
                r.observe(c, pass, k);
            }
            let first = seen.iter().position(|c| c.patience > 0).expect("patience probed");
            let twin_done = seen
                .iter()
                .rposition(|c| c.quantization == Quantization::Sq8 && c.patience == 0);
            assert!(twin_done.is_some_and(|t| t < first), "after the twin: {seen:?}");
            assert!(seen
                .iter()
                .filter(|c| c.patience > 0)
                .all(|c| c.patience == PROBE_PATIENCE && (c.m, c.ef_construction) == (16, 80)));
            assert_eq!(best.patience > 0, kept, "saving {saving}: {best:?}");
            assert_eq!(r.best_cost, f(&best).1);
        }
    }

    /// With the twins built already (not probed again), the early-termination probe still
    /// comes before the ladder neighbours, which cost a build each.
    #[test]
    fn patience_comes_before_the_ladder_when_the_twins_are_built() {
        let w = cfg(16, 80, 40);
        let twins: Vec<_> = w.quantization.twins().collect();
        let mut r = Refiner::new(w, cost(&w), Some(39), &twins, &Ladders::seed(), &|p| {
            p.quantization != w.quantization
        });
        let mut order = Vec::new();
        while let Some(c) = r.next_config() {
            if (c.m, c.ef_construction) != (16, 80) || c.patience > 0 {
                order.push(c.patience > 0);
            }
            r.observe(c, recall(&c) >= 0.97, cost(&c));
        }
        assert_eq!(order.first(), Some(&true), "{order:?}");
        assert!(order.iter().any(|p| !p), "the ladder follows: {order:?}");
    }

    /// A RaBitQ twin that fails at the winner's ef is walked up whatever its count of
    /// distance evaluations (blocks count whole neighbour lists); an SQ4 twin with the same
    /// count is abandoned as too dear (its count is the same kind of work as the winner's).
    #[test]
    fn a_rabitq_twin_is_walked_up_whatever_its_count() {
        let w = cfg(16, 80, 30).with_quantization(Quantization::Sq8);
        for (twin, walked) in [(Quantization::Rabitq, true), (Quantization::Sq4, false)] {
            let mut r = Refiner::new(w, 100.0, Some(29), &[twin], &Ladders::seed(), &|_| false);
            let c = r.next_config().expect("the twin first");
            assert_eq!((c.quantization, c.ef_search), (twin, 30));
            r.observe(c, false, 1000.0);
            let next = r.next_config().expect("more to probe");
            assert_eq!(next.quantization == twin, walked, "{twin:?}: {next:?}");
            if walked {
                assert!(next.ef_search > 30, "{next:?}");
                // and a passing block never becomes the cost the SQ probes are held to
                r.observe(next, true, 900.0);
                assert_eq!((r.best_cost, r.best_quantization), (100.0, Quantization::Sq8));
            }
        }
    }

    #[test]
    fn bisects_ef_between_rungs_to_the_least_passing_integer() {
        // at m16 ec80 the surface passes .95 from ef 20 on (3/(20·4·2.99) = .0125 ≤ .05)
        let w = cfg(16, 80, 27);
        let mut r = Refiner::new(
            w,
            cost(&w),
            Some(22),
            &[Quantization::Sq8],
            &Ladders::seed(),
            &|_| true,
        );
        let (mut efs, mut patient) = (Vec::new(), 0);
        while let Some(c) = r.next_config() {
            if c.patience == 0 {
                efs.push(c.ef_search);
            } else {
                patient += 1;
            }
            r.observe(c, recall(&c) >= 0.99, cost(&c));
        }
        // only the winner's graph (every probe counted as built): ef 23..26 bisected, then
        // the same graph with early termination (no build either)
        assert!(efs.iter().all(|&e| (23..27).contains(&e)), "{efs:?}");
        assert!(efs.len() <= 3, "{efs:?}");
        assert!(patient > 0);
    }

    #[test]
    fn finds_a_cheaper_passing_config_between_rungs() {
        let target = 0.975;
        let w = cfg(16, 80, 40);
        let (seen, best) = run(w, Some(33), target);
        assert!(recall(&best) >= target);
        assert!(cost(&best) < cost(&w), "{best:?} from {seen:?}");
        // probes lie between rungs: ec 60 / 120, m 14 / 20, and sq8
        let graphs: Vec<(u32, u32, Quantization)> = seen
            .iter()
            .map(|c| (c.m, c.ef_construction, c.quantization))
            .collect();
        for g in [
            (16, 60, Quantization::None),
            (16, 120, Quantization::None),
            (14, 80, Quantization::None),
            (20, 80, Quantization::None),
        ] {
            assert!(graphs.contains(&g), "{g:?} not probed: {graphs:?}");
        }
    }

    #[test]
    fn the_least_ef_is_not_walked_below_the_bound() {
        let w = cfg(16, 80, MIN_EF_SEARCH);
        let (seen, _) = run(w, None, 0.5);
        assert!(seen.iter().all(|c| c.ef_search >= MIN_EF_SEARCH));
    }

    #[test]
    fn ef_search_walks_down_then_bisects() {
        let mut s = EfSearch::new(40, None, None, 200);
        let pass_from = 23;
        let mut n = 0;
        while let Some(ef) = s.next() {
            s.observe(ef, ef >= pass_from, false);
            n += 1;
            assert!(n < 20);
        }
        assert_eq!(s.hi, Some(pass_from));
        assert_eq!(s.lo, Some(pass_from - 1));
    }

    /// A failing start walks up to the run's largest ef, not past it: the seed's 200, or a
    /// raised bound.
    #[test]
    fn a_failing_start_walks_up_to_the_runs_bound() {
        for (max, want) in [(200, 200), (800, 238)] {
            let mut s = EfSearch::new(190, None, None, max);
            s.observe(190, false, false);
            assert_eq!(s.next(), Some(want));
        }
        let raised = Ladders::within(&crate::params::Bounds::raised(400, 800, 64).unwrap());
        let w = cfg(16, 80, 640);
        let r = Refiner::new(w, cost(&w), Some(500), &[], &raised, &|_| true);
        assert_eq!(r.max_ef, 800);
        assert_eq!(
            r.search.start, 640,
            "a raised winner's ef is not clamped to the seed's 200"
        );
    }

    #[test]
    fn a_dear_failing_probe_is_abandoned() {
        let mut s = EfSearch::new(40, None, None, 200);
        s.observe(40, false, true);
        assert_eq!(s.next(), None);
    }
}
