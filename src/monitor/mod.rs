//! The live recall monitor: how well the serving generation answers the queries it is
//! actually sent.
//!
//! A harness measures a config on queries someone chose; the monitor measures the serving
//! graph on its traffic. A share (`sample_rate`) of served searches is queued, off the
//! request path, and re-run exactly (brute force over the very vectors the generation
//! serves) by a background worker; the served hits are compared with the exact top-k. The
//! queue is bounded and a full queue drops the sample: a search never waits for the
//! monitor. Figures are kept over a rolling window of the last `window` samples of one
//! generation, and start empty when a new generation swaps in (its recall is its own).
//!
//! The same tap feeds harness capture ([`crate::harness::capture`]): a capture names an
//! index and a sample rate, and sampled request vectors go to it.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::names::{HarnessName, IndexName};
use crate::serving::ServingGraph;
use crate::stats::{wilson_lower, wilson_upper};

/// Samples waiting for the worker at most; more are dropped.
pub const QUEUE: usize = 256;
/// Largest window.
pub const MAX_WINDOW: usize = 1_000_000;
/// Window when none is configured.
pub const DEFAULT_WINDOW: usize = 1000;

/// Errors of the monitor settings.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A setting out of its domain.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What it must be.
        reason: String,
    },
}

impl crate::error::Classified for MonitorError {
    fn classify(&self) -> crate::error::Class {
        match self {
            MonitorError::InvalidField { .. } => crate::error::Class::invalid("invalid_monitor_settings"),
        }
    }
}

/// A share of searches in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct SampleRate(f64);

impl SampleRate {
    /// Parses a share; `field` names it in the error.
    pub fn parse(field: &'static str, v: f64) -> Result<SampleRate, MonitorError> {
        if (0.0..=1.0).contains(&v) {
            Ok(SampleRate(v))
        } else {
            Err(MonitorError::InvalidField {
                field,
                reason: format!("must be between 0 and 1, got {v}"),
            })
        }
    }

    /// The share.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether this search is sampled (a fresh draw per call).
    pub fn draw(self) -> bool {
        self.0 >= 1.0 || (self.0 > 0.0 && uniform() < self.0)
    }
}

impl TryFrom<f64> for SampleRate {
    type Error = MonitorError;
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        SampleRate::parse("sample_rate", v)
    }
}

impl From<SampleRate> for f64 {
    fn from(r: SampleRate) -> f64 {
        r.0
    }
}

/// Per-index settings, stored at `indexes/{index}/monitor.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MonitorSettings {
    /// Share of served searches re-run exactly.
    pub sample_rate: SampleRate,
    /// Samples the figures are computed over.
    pub window: usize,
}

/// `sample_rate` when none is configured: one search in a hundred.
pub const DEFAULT_SAMPLE_RATE: f64 = 0.01;

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            sample_rate: SampleRate(DEFAULT_SAMPLE_RATE),
            window: DEFAULT_WINDOW,
        }
    }
}

impl MonitorSettings {
    /// Parses a PUT: each field given replaces the current one.
    pub fn parse(
        current: MonitorSettings,
        sample_rate: Option<f64>,
        window: Option<i64>,
    ) -> Result<Self, MonitorError> {
        let sample_rate = match sample_rate {
            Some(v) => SampleRate::parse("sample_rate", v)?,
            None => current.sample_rate,
        };
        let window = match window {
            Some(w) if (1..=MAX_WINDOW as i64).contains(&w) => w as usize,
            Some(w) => {
                return Err(MonitorError::InvalidField {
                    field: "window",
                    reason: format!("must be between 1 and {MAX_WINDOW}, got {w}"),
                })
            }
            None => current.window,
        };
        Ok(MonitorSettings { sample_rate, window })
    }
}

/// The live figures of an index.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiveStats {
    /// Samples in the window.
    pub queries: usize,
    /// Found exact neighbours over all sampled slots.
    pub recall_at_k: f64,
    /// 95 % Wilson lower bound of that recall.
    pub recall_ci_low: f64,
    /// 95 % Wilson upper bound (drift is called only when even it misses the target).
    #[serde(skip)]
    pub recall_ci_high: f64,
    /// The window's size.
    pub window: usize,
    /// The generation the samples are of.
    pub generation: u64,
}

/// The last `window` samples of one generation: `(found, slots)` per query.
#[derive(Debug, Clone)]
struct LiveWindow {
    generation: u64,
    samples: VecDeque<(u32, u32)>,
    found: u64,
    slots: u64,
}

impl LiveWindow {
    fn new(generation: u64) -> LiveWindow {
        LiveWindow {
            generation,
            samples: VecDeque::new(),
            found: 0,
            slots: 0,
        }
    }

    fn push(&mut self, found: u32, slots: u32, window: usize) {
        self.samples.push_back((found, slots));
        self.found += u64::from(found);
        self.slots += u64::from(slots);
        self.trim(window);
    }

    fn trim(&mut self, window: usize) {
        while self.samples.len() > window {
            if let Some((f, s)) = self.samples.pop_front() {
                self.found -= u64::from(f);
                self.slots -= u64::from(s);
            }
        }
    }

    fn stats(&self, window: usize) -> LiveStats {
        let (found, slots) = (self.found as usize, self.slots as usize);
        LiveStats {
            queries: self.samples.len(),
            recall_at_k: if slots == 0 {
                0.0
            } else {
                found as f64 / slots as f64
            },
            recall_ci_low: wilson_lower(found, slots),
            recall_ci_high: wilson_upper(found, slots),
            window,
            generation: self.generation,
        }
    }
}

/// A sampled search, queued for the worker.
pub struct Sample {
    /// The index searched.
    pub index: IndexName,
    /// The generation that answered.
    pub serving: Arc<ServingGraph>,
    /// The vectors the search was answered over — the generation's rows, the rows
    /// appended since (searched exactly beside the graph) less the rows deleted since —
    /// what the exact re-check runs over.
    pub vectors: Arc<crate::vectors::VectorSet>,
    /// The prepared query (normalised for cosine), when the monitor sampled it.
    pub monitored: Option<Vec<f32>>,
    /// The rows served, nearest first.
    pub served: Vec<u32>,
    /// The search's `k`.
    pub k: usize,
    /// The raw request vector and the captures that sampled it.
    pub captured: Option<(Vec<f32>, Vec<HarnessName>)>,
}

/// Found exact neighbours among the served rows.
pub fn found(served: &[u32], exact: &[u32]) -> u32 {
    served.iter().filter(|r| exact.contains(r)).count() as u32
}

/// The monitor of the process: settings, windows, capture taps and the sample queue.
pub struct Monitor {
    default: MonitorSettings,
    settings: Mutex<HashMap<IndexName, MonitorSettings>>,
    windows: Mutex<HashMap<IndexName, LiveWindow>>,
    /// Captures under way, by index: `(harness, sample rate)`.
    taps: Mutex<HashMap<IndexName, Vec<(HarnessName, SampleRate)>>>,
    queue: tokio::sync::mpsc::Sender<Sample>,
    dropped: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Monitor {
    /// A monitor with `default` settings for indexes that set none, and the receiving end
    /// of its queue (for the worker).
    pub fn new(default: MonitorSettings) -> (Monitor, tokio::sync::mpsc::Receiver<Sample>) {
        let (queue, rx) = tokio::sync::mpsc::channel(QUEUE);
        let m = Monitor {
            default,
            settings: Mutex::default(),
            windows: Mutex::default(),
            taps: Mutex::default(),
            queue,
            dropped: AtomicU64::new(0),
        };
        (m, rx)
    }

    /// The settings of `index`.
    pub fn settings(&self, index: &IndexName) -> MonitorSettings {
        lock(&self.settings).get(index).copied().unwrap_or(self.default)
    }

    /// Sets the settings of `index` (the window is trimmed at once if it shrank).
    pub fn set(&self, index: &IndexName, s: MonitorSettings) {
        lock(&self.settings).insert(index.clone(), s);
        if let Some(w) = lock(&self.windows).get_mut(index) {
            w.trim(s.window);
        }
    }

    /// Forgets an index (deleted).
    pub fn forget(&self, index: &IndexName) {
        lock(&self.settings).remove(index);
        lock(&self.windows).remove(index);
        lock(&self.taps).remove(index);
    }

    /// Starts feeding sampled request vectors of `index` to capture `harness`.
    pub fn tap(&self, index: &IndexName, harness: &HarnessName, rate: SampleRate) {
        let mut taps = lock(&self.taps);
        let list = taps.entry(index.clone()).or_default();
        list.retain(|(h, _)| h != harness);
        list.push((harness.clone(), rate));
    }

    /// Stops feeding capture `harness`.
    pub fn untap(&self, harness: &HarnessName) {
        for list in lock(&self.taps).values_mut() {
            list.retain(|(h, _)| h != harness);
        }
    }

    /// Decides whether a search is sampled, for the monitor and for each capture; cheap
    /// when nothing is (one lock, one draw).
    pub fn draw(&self, index: &IndexName) -> (bool, Vec<HarnessName>) {
        let monitored = self.settings(index).sample_rate.draw();
        let captures = match lock(&self.taps).get(index) {
            Some(list) => list
                .iter()
                .filter(|(_, r)| r.draw())
                .map(|(h, _)| h.clone())
                .collect(),
            None => Vec::new(),
        };
        (monitored, captures)
    }

    /// Queues a sample, or drops it when the worker is behind.
    pub fn offer(&self, sample: Sample) {
        if self.queue.try_send(sample).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Samples dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records one re-run sample of `generation`; a newer generation starts a new window,
    /// an older one (a sample queued before a swap) is ignored.
    pub fn record(&self, index: &IndexName, generation: u64, found: u32, slots: u32) {
        let window = self.settings(index).window;
        let mut windows = lock(&self.windows);
        let w = windows
            .entry(index.clone())
            .or_insert_with(|| LiveWindow::new(generation));
        if generation > w.generation {
            *w = LiveWindow::new(generation);
        } else if generation < w.generation {
            return;
        }
        w.push(found, slots, window);
    }

    /// The live figures of `index` for `serving_generation`: `None` before its first
    /// sample (also right after a swap).
    pub fn live(&self, index: &IndexName, serving_generation: Option<u64>) -> Option<LiveStats> {
        let window = self.settings(index).window;
        let windows = lock(&self.windows);
        let w = windows.get(index)?;
        (Some(w.generation) == serving_generation && !w.samples.is_empty()).then(|| w.stats(window))
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        // a distinct stream per thread: a randomly keyed hash of the thread's id
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()) | 1
    });
}

/// Uniform in `[0, 1)` from a per-thread xorshift (sampling needs no more).
fn uniform() -> f64 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> IndexName {
        IndexName::parse(s.to_string()).unwrap()
    }

    fn settings(rate: f64, window: usize) -> MonitorSettings {
        MonitorSettings {
            sample_rate: SampleRate::parse("sample_rate", rate).unwrap(),
            window,
        }
    }

    #[test]
    fn settings_parse_and_refuse() {
        let cur = settings(0.01, 1000);
        assert_eq!(MonitorSettings::parse(cur, None, None).unwrap(), cur);
        assert_eq!(
            MonitorSettings::parse(cur, Some(1.0), Some(200)).unwrap(),
            settings(1.0, 200)
        );
        for (r, w) in [
            (Some(1.5), None),
            (Some(-0.1), None),
            (Some(f64::NAN), None),
            (None, Some(0)),
            (None, Some(-3)),
        ] {
            assert!(MonitorSettings::parse(cur, r, w).is_err(), "{r:?} {w:?}");
        }
        assert!(serde_json::from_str::<MonitorSettings>(r#"{"sample_rate":2,"window":3}"#).is_err());
    }

    #[test]
    fn draws_follow_the_rate() {
        assert!(!(0..1000).any(|_| SampleRate(0.0).draw()));
        assert!((0..1000).all(|_| SampleRate(1.0).draw()));
        let n = (0..20_000).filter(|_| SampleRate(0.25).draw()).count();
        assert!((4000..6000).contains(&n), "{n}");
    }

    #[test]
    fn window_rolls_and_resets_on_a_new_generation() {
        let (m, _rx) = Monitor::new(settings(1.0, 4));
        let ix = name("a");
        assert_eq!(m.live(&ix, Some(1)), None);
        for f in [10, 10, 5, 5, 5, 5] {
            m.record(&ix, 1, f, 10);
        }
        let s = m.live(&ix, Some(1)).unwrap();
        assert_eq!((s.queries, s.window, s.generation), (4, 4, 1));
        assert!((s.recall_at_k - 0.5).abs() < 1e-12);
        assert!(s.recall_ci_low < 0.5 && s.recall_ci_high > 0.5);
        // asked about another generation: nothing
        assert_eq!(m.live(&ix, Some(2)), None);
        // a late sample of the old generation after the swap is ignored; the new one starts empty
        m.record(&ix, 2, 9, 10);
        m.record(&ix, 1, 0, 10);
        let s = m.live(&ix, Some(2)).unwrap();
        assert_eq!(s.queries, 1);
        assert!((s.recall_at_k - 0.9).abs() < 1e-12);
        // a smaller window trims at once
        for _ in 0..3 {
            m.record(&ix, 2, 10, 10);
        }
        m.set(&ix, settings(1.0, 2));
        assert_eq!(m.live(&ix, Some(2)).unwrap().queries, 2);
    }

    #[test]
    fn taps_sample_captures_of_their_index_only() {
        let (m, _rx) = Monitor::new(settings(0.0, 10));
        let (a, b) = (name("a"), name("b"));
        let h = HarnessName::parse("cap".to_string()).unwrap();
        m.tap(&a, &h, SampleRate(1.0));
        assert_eq!(m.draw(&a), (false, vec![h.clone()]));
        assert_eq!(m.draw(&b), (false, vec![]));
        m.untap(&h);
        assert_eq!(m.draw(&a), (false, vec![]));
    }

    #[test]
    fn found_counts_served_rows_in_the_exact_set() {
        assert_eq!(found(&[1, 2, 3], &[3, 4, 1]), 2);
        assert_eq!(found(&[], &[1]), 0);
    }
}
