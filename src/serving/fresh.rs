//! Searching a generation together with the writes made since it was built.
//!
//! A generation's graph covers the first `record.vectors` rows of its index. Rows appended
//! since (the *fresh* rows) are searched exactly, beside the graph, and merged by distance:
//! an acknowledged append is found by the next search, whatever the graph. Rows deleted
//! since stay in the graph — they still route a search, as hnswlib's `mark_deleted` nodes
//! do — but are never returned; the graph is asked for more hits in proportion to the rows
//! it holds that are deleted, and asked again, wider, if too few live ones come back.
//! Appended rows are folded into the graph by insertion once `fold_in_rows` of them wait
//! ([`super::Serving::fold_in`]: the next generation is the same graph with them inserted,
//! so the exact scan stays short); a re-activation (by hand, or by the refresh rule once
//! the writes since a build pass a fraction of it) rebuilds, leaving deleted rows out.

use serde::{Deserialize, Serialize};

use crate::hnsw::{Graph, Hit, Knobs};
use crate::vectors::VectorSet;

/// `max_fresh_fraction` when an index sets none.
pub const DEFAULT_MAX_FRESH_FRACTION: f64 = 0.2;
/// `fold_in_rows` when an index sets none. Measured at 1,000 appends/s (BENCHMARKS "Fresh
/// writes"): the search median during the stream fell as folds got smaller (pydocs 384-d:
/// 1.7-1.9x idle at 2,000, 1.6x at 1,000, 1.5x at 500; no folds 2.6x), while each fold
/// re-encodes and stores the whole graph (at 1M rows a larger value saves that work).
pub const DEFAULT_FOLD_IN_ROWS: u64 = 1_000;
/// Largest `fold_in_rows` accepted.
pub const MAX_FOLD_IN_ROWS: u64 = 10_000_000;

fn default_fold_in_rows() -> u64 {
    DEFAULT_FOLD_IN_ROWS
}

/// When an index is re-activated by itself, stored per index (`refresh.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RefreshSettings {
    /// Past this share of fresh writes — (inserted + deleted) / the generation's vectors —
    /// the index is re-activated in the background with its promoted config.
    pub max_fresh_fraction: f64,
    /// Once this many rows were appended since the serving generation (and the fraction is
    /// not passed), they are inserted into a copy of its graph, swapped in as the next
    /// generation; 0 never folds (the scan grows until the fraction is passed).
    #[serde(default = "default_fold_in_rows")]
    pub fold_in_rows: u64,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        RefreshSettings {
            max_fresh_fraction: DEFAULT_MAX_FRESH_FRACTION,
            fold_in_rows: DEFAULT_FOLD_IN_ROWS,
        }
    }
}

/// A refresh setting out of bounds.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RefreshError {
    /// Not within 0..=1.
    #[error("max_fresh_fraction must be between 0 and 1, got {0}")]
    Fraction(f64),
    /// Not within 0..=[`MAX_FOLD_IN_ROWS`].
    #[error("fold_in_rows must be between 0 and {MAX_FOLD_IN_ROWS}, got {0}")]
    FoldInRows(i64),
}

impl crate::error::Classified for RefreshError {
    fn classify(&self) -> crate::error::Class {
        crate::error::Class::invalid("invalid_refresh")
    }
}

impl RefreshSettings {
    /// Parses a PUT: a field left out keeps its current value.
    pub fn parse(
        current: RefreshSettings,
        max_fresh_fraction: Option<f64>,
        fold_in_rows: Option<i64>,
    ) -> Result<Self, RefreshError> {
        let max_fresh_fraction = match max_fresh_fraction {
            None => current.max_fresh_fraction,
            Some(f) if (0.0..=1.0).contains(&f) => f,
            Some(f) => return Err(RefreshError::Fraction(f)),
        };
        let fold_in_rows = match fold_in_rows {
            None => current.fold_in_rows,
            Some(n) if (0..=MAX_FOLD_IN_ROWS as i64).contains(&n) => n as u64,
            Some(n) => return Err(RefreshError::FoldInRows(n)),
        };
        Ok(RefreshSettings {
            max_fresh_fraction,
            fold_in_rows,
        })
    }

    /// Whether the rows appended since a generation are due to be folded into its graph.
    pub fn fold_due(&self, fresh: Fresh) -> bool {
        self.fold_in_rows > 0 && fresh.inserted >= self.fold_in_rows
    }

    /// Whether a generation covering `vectors` live rows is due for a re-activation after
    /// `fresh` writes since it was built.
    pub fn due(&self, fresh: Fresh, vectors: u64) -> bool {
        let writes = fresh.inserted + fresh.deleted;
        writes > 0 && writes as f64 > self.max_fresh_fraction * vectors.max(1) as f64
    }
}

/// The writes since a generation was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fresh {
    /// Rows appended since.
    pub inserted: u64,
    /// Rows deleted since.
    pub deleted: u64,
}

impl Fresh {
    /// The writes since a generation of `record` (`vectors` rows, `deleted` of them left
    /// out), for an index of `rows` rows ever appended, `live` of them not deleted.
    pub fn since(record: &super::ActivationRecord, rows: u64, live: u64) -> Fresh {
        Fresh {
            inserted: rows.saturating_sub(record.vectors),
            deleted: rows.saturating_sub(live).saturating_sub(record.deleted),
        }
    }
}

/// How many times a search whose graph hits were mostly deleted rows is asked again, each
/// time twice as wide.
const WIDEN: usize = 4;

/// The `k` nearest live rows of `view` to the prepared query `q`: the graph's (over the
/// first `rows` rows, `built_deleted` of which it left out when it was built), less the
/// rows deleted since, merged with an exact scan of the rows from `rows` on. `view` holds
/// every row the graph was built from (rows are append-only), so row numbers agree.
pub fn search(
    graph: &Graph,
    (rows, built_deleted): (usize, usize),
    view: &VectorSet,
    q: &[f32],
    k: usize,
    knobs: Knobs,
) -> Vec<Hit> {
    let rows = rows.min(view.len());
    // rows of the graph deleted after it was built: passed through, never returned
    let stale = view.deleted_below(rows).saturating_sub(built_deleted);
    let in_graph = rows.saturating_sub(built_deleted).max(1);
    let mut hits = if stale == 0 {
        graph.search_with(view, q, k, knobs, None)
    } else {
        // ask for as many more as the deleted share of the graph would take away
        let live_share = (in_graph - stale.min(in_graph - 1)) as f64 / in_graph as f64;
        let mut want = ((k as f64 / live_share).ceil() as usize + 1).min(in_graph);
        let mut ef = ((knobs.ef as f64 / live_share).ceil() as usize).max(want);
        let mut attempt = 0;
        loop {
            let mut found = graph.search_with(view, q, want, Knobs { ef, ..knobs }, None);
            let asked = found.len();
            found.retain(|h| !view.is_deleted(h.row as usize));
            attempt += 1;
            if found.len() >= k || asked < want || want >= in_graph || attempt >= WIDEN {
                break found;
            }
            want = (want * 2).min(in_graph);
            ef = (ef * 2).max(want);
        }
    };
    if view.len() > rows {
        hits.extend(scan(view, rows, q, k));
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
    }
    hits.truncate(k);
    hits
}

/// The `k` nearest live rows from `from` on, exactly. (Each distance goes through the
/// dispatched kernel: measured 20 ns a 128-d row, where the same loop compiled as a kernel
/// `Task` took 25 ns.)
fn scan(view: &VectorSet, from: usize, q: &[f32], k: usize) -> Vec<Hit> {
    let metric = view.metric();
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for row in from..view.len() {
        if view.is_deleted(row) {
            continue;
        }
        let key = metric.rank_key(q, view.row(row));
        if best.len() == k && best.last().is_some_and(|w| w.0 <= key) {
            continue;
        }
        let at = best.partition_point(|b| b.0 <= key);
        best.insert(at, (key, row as u32));
        best.truncate(k);
    }
    best.into_iter()
        .map(|(key, row)| Hit {
            row,
            distance: metric.key_to_distance(key),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Metric;
    use crate::hnsw::{build, BuildOptions};
    use crate::params::{HnswConfig, Quantization};
    use crate::rng::SplitMix64;

    fn rows(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut r = SplitMix64::new(seed);
        (0..n * dims)
            .map(|_| r.below(2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn set_of(data: &[f32], dims: usize, metric: Metric, from: usize) -> VectorSet {
        let n = data.len() / dims;
        VectorSet::from_rows(
            dims,
            metric,
            (from..from + n).map(|i| format!("v{i}")).collect(),
            data.to_vec(),
        )
    }

    /// The exact live top k by the metric's own distance, sorted naively (the reference).
    fn exact(view: &VectorSet, q: &[f32], k: usize) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = view
            .live_rows()
            .map(|r| (view.metric().distance(q, view.row(r)), r as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|p| p.1).collect()
    }

    /// Rows appended after the build are found at once, at their exact distance, merged in
    /// order with the graph's; rows deleted after it are never returned, and the live
    /// nearest are still found (recall against the exact live top 10 within .05 of the
    /// graph's own before the writes, every quantization; 1-bit codes at 16 dimensions
    /// are coarse, so that baseline is the graph's, not a constant).
    #[test]
    fn fresh_rows_are_found_and_deleted_rows_never_returned() {
        let dims = 16;
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            for quantization in [Quantization::None, Quantization::Sq8, Quantization::Rabitq] {
                let base = rows(1500, dims, 3);
                let built = set_of(&base, dims, metric, 0);
                let config = HnswConfig {
                    quantization,
                    ..HnswConfig::DEFAULT
                };
                let graph = build(&built, built.len(), config, BuildOptions::all_cores());
                // 500 rows appended, then 40 % of all rows deleted
                let mut view = built.clone();
                let more = rows(500, dims, 4);
                view.push_rows(&(1500..2000).map(|i| format!("v{i}")).collect::<Vec<_>>(), &more);
                let mut r = SplitMix64::new(9);
                for _ in 0..800 {
                    view.delete_row(r.below(view.len()));
                }
                let knobs = Knobs::of(&config);
                // the graph's own recall on the rows it was built from, before any write
                let (mut base_found, mut base_slots) = (0usize, 0usize);
                for row in (0..1500).step_by(25) {
                    let q = built.row(row).to_vec();
                    let want = exact(&built, &q, 10);
                    let hits = graph.search_with(&built, &q, 10, knobs, None);
                    base_found += hits.iter().filter(|h| want.contains(&h.row)).count();
                    base_slots += want.len();
                }
                let base = base_found as f64 / base_slots as f64;
                let (mut found, mut slots) = (0usize, 0usize);
                for i in 0..60 {
                    // half the queries are fresh rows themselves: the row must come first
                    let row = if i % 2 == 0 {
                        1500 + r.below(500)
                    } else {
                        r.below(1500)
                    };
                    let q = view.row(row).to_vec();
                    let hits = search(&graph, (1500, 0), &view, &q, 10, knobs);
                    assert_eq!(hits.len(), 10, "{metric:?} {quantization:?}");
                    assert!(
                        hits.iter().all(|h| !view.is_deleted(h.row as usize)),
                        "a deleted row returned"
                    );
                    assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
                    if !view.is_deleted(row) && metric != Metric::Dot {
                        assert_eq!(
                            hits[0].row as usize, row,
                            "{metric:?} {quantization:?}: the row itself"
                        );
                    }
                    let want = exact(&view, &q, 10);
                    found += hits.iter().filter(|h| want.contains(&h.row)).count();
                    slots += want.len();
                }
                let recall = found as f64 / slots as f64;
                assert!(
                    recall >= base - 0.05,
                    "{metric:?} {quantization:?}: recall {recall}, before the writes {base}"
                );
            }
        }
    }

    /// Settings: 0..=1 or refused; a field left out keeps its value; due strictly past the
    /// fraction of the generation's vectors, never with no writes.
    #[test]
    fn refresh_settings_and_the_rule() {
        let d = RefreshSettings::default();
        assert_eq!(d.max_fresh_fraction, 0.2);
        assert_eq!(d.fold_in_rows, DEFAULT_FOLD_IN_ROWS);
        assert_eq!(RefreshSettings::parse(d, None, None), Ok(d));
        assert_eq!(
            RefreshSettings::parse(d, Some(1.0), None).map(|s| s.max_fresh_fraction),
            Ok(1.0)
        );
        assert_eq!(
            RefreshSettings::parse(d, Some(0.0), None).map(|s| s.max_fresh_fraction),
            Ok(0.0)
        );
        for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
            assert!(RefreshSettings::parse(d, Some(bad), None).is_err(), "{bad}");
        }
        // fold_in_rows: 0 (never) ..= the bound; the other field keeps its value
        let folds = RefreshSettings::parse(d, None, Some(0)).unwrap();
        assert_eq!((folds.fold_in_rows, folds.max_fresh_fraction), (0, 0.2));
        assert_eq!(
            RefreshSettings::parse(d, None, Some(MAX_FOLD_IN_ROWS as i64)).map(|s| s.fold_in_rows),
            Ok(MAX_FOLD_IN_ROWS)
        );
        for bad in [-1, MAX_FOLD_IN_ROWS as i64 + 1] {
            assert_eq!(
                RefreshSettings::parse(d, Some(0.5), Some(bad)),
                Err(RefreshError::FoldInRows(bad))
            );
        }
        // a stored rule from before fold_in_rows reads with the default
        let old: RefreshSettings = serde_json::from_str(r#"{"max_fresh_fraction":0.3}"#).unwrap();
        assert_eq!(old.fold_in_rows, DEFAULT_FOLD_IN_ROWS);
        let f = |inserted, deleted| Fresh { inserted, deleted };
        assert!(!d.due(f(20, 0), 100));
        assert!(d.due(f(21, 0), 100));
        assert!(d.due(f(11, 10), 100));
        let zero = RefreshSettings {
            max_fresh_fraction: 0.0,
            fold_in_rows: 0,
        };
        assert!(!zero.due(f(0, 0), 100));
        assert!(zero.due(f(0, 1), 100));
        // folds once fold_in_rows rows were appended; 0 never folds; deletes do not count
        assert!(!d.fold_due(f(DEFAULT_FOLD_IN_ROWS - 1, 500)));
        assert!(d.fold_due(f(DEFAULT_FOLD_IN_ROWS, 0)));
        assert!(!zero.fold_due(f(1_000_000, 0)));
        let record = crate::serving::ActivationRecord {
            generation: 1,
            config: HnswConfig::DEFAULT,
            activated_at: chrono::Utc::now(),
            vectors: 100,
            build_time_secs: 0.0,
            loaded_from_store: false,
            memory_bytes: 0,
            deleted: 5,
            folded_from: None,
            lineage: None,
        };
        // 130 rows ever, 110 live: 30 appended since, 20 deleted in all, 15 of them since
        assert_eq!(Fresh::since(&record, 130, 110), f(30, 15));
        assert_eq!(Fresh::since(&record, 100, 95), f(0, 0));
    }

    /// The scan of fresh rows is the exact top k of the rows from `from` on, deleted ones
    /// left out, at the metric's distance.
    #[test]
    fn the_scan_is_exact() {
        let dims = 10;
        for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
            let mut view = set_of(&rows(700, dims, 11), dims, metric, 0);
            for row in (0..700).step_by(5) {
                view.delete_row(row);
            }
            let q = view.prepare_query(&rows(1, dims, 12)).unwrap();
            let got = scan(&view, 200, &q, 15);
            let mut want: Vec<(f32, u32)> = view
                .live_rows()
                .filter(|&r| r >= 200)
                .map(|r| (metric.distance(&q, view.row(r)), r as u32))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(
                got.iter().map(|h| h.row).collect::<Vec<_>>(),
                want.iter().take(15).map(|w| w.1).collect::<Vec<_>>(),
                "{metric:?}"
            );
            for (h, w) in got.iter().zip(&want) {
                assert!(
                    (h.distance - w.0).abs() <= 1e-4 * w.0.abs().max(1.0),
                    "{metric:?}"
                );
            }
        }
    }

    /// With nothing appended or deleted since the build, it is the graph's own search.
    #[test]
    fn without_writes_it_is_the_graphs_search() {
        let dims = 12;
        let built = set_of(&rows(800, dims, 5), dims, Metric::L2, 0);
        let graph = build(
            &built,
            built.len(),
            HnswConfig::DEFAULT,
            BuildOptions::all_cores(),
        );
        let knobs = Knobs::of(&HnswConfig::DEFAULT);
        for row in (0..800).step_by(37) {
            let q = built.row(row).to_vec();
            assert_eq!(
                search(&graph, (800, 0), &built, &q, 10, knobs),
                graph.search_with(&built, &q, 10, knobs, None)
            );
        }
    }

    /// A graph built after deletes leaves the deleted rows out (no node links to them), so
    /// a search of it returns none of them even before filtering, and counts them as built.
    #[test]
    fn a_graph_built_after_deletes_leaves_them_out() {
        let dims = 12;
        let mut set = set_of(&rows(900, dims, 6), dims, Metric::L2, 0);
        for row in (0..900).step_by(3) {
            set.delete_row(row);
        }
        for engine in [crate::params::Engine::Native, crate::params::Engine::HnswRs] {
            let options = BuildOptions {
                engine,
                ..BuildOptions::all_cores()
            };
            let graph = build(&set, set.len(), HnswConfig::DEFAULT, options);
            let knobs = Knobs::of(&HnswConfig::DEFAULT);
            for row in (1..900).step_by(7) {
                let q = set.row(row).to_vec();
                let hits = graph.search_with(&set, &q, 10, knobs, None);
                assert!(
                    hits.iter().all(|h| h.row % 3 != 0),
                    "{engine:?}: a left-out row found"
                );
                assert_eq!(search(&graph, (900, 300), &set, &q, 10, knobs), hits);
            }
        }
    }
}
