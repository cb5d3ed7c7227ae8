//! Harnesses captured from live traffic: the queries an index is actually sent.
//!
//! Stored vectors used as queries flatter a config (each query's nearest neighbour is
//! itself, and the queries sit exactly on the data's distribution); a captured harness
//! holds sampled search request vectors instead. A capture collects `want` distinct
//! vectors (bit-equal repeats are one query) into `pending`; when it has them they become
//! the harness's queries in one step and its exact ground truth is computed. A refresh
//! starts a new capture while the complete queries stay usable, so an agent tuning on a
//! rolling window of its workload never finds its harness empty.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Query;
use crate::monitor::SampleRate;

/// Where a capture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureState {
    /// Collecting search vectors.
    Capturing,
    /// It has all it wanted; the queries are the harness's.
    Complete,
}

/// The capture part of a harness definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capture {
    /// Capturing or complete.
    pub state: CaptureState,
    /// Distinct queries wanted.
    pub want: usize,
    /// Share of the index's searches sampled.
    pub sample_rate: SampleRate,
    /// Completed captures so far: the ground truth of one revision is not another's.
    pub revision: u64,
    /// Queries of the capture under way (the harness's `queries` are the last complete one).
    #[serde(default)]
    pub pending: Vec<Query>,
}

/// What offering a vector did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// It was added; the capture now has this many.
    Added(usize),
    /// A repeat of a captured vector, or the capture is not collecting.
    Ignored,
    /// It was the last one wanted: the capture is complete.
    Completed,
}

impl Capture {
    /// A new capture of `want` queries.
    pub fn new(want: usize, sample_rate: SampleRate) -> Capture {
        Capture {
            state: CaptureState::Capturing,
            want,
            sample_rate,
            revision: 0,
            pending: Vec::new(),
        }
    }

    /// Queries collected by the capture under way, or all of them once complete.
    pub fn have(&self, complete_queries: usize) -> usize {
        match self.state {
            CaptureState::Capturing => self.pending.len(),
            CaptureState::Complete => complete_queries,
        }
    }

    /// Adds `vector` unless it repeats one already captured; `seen` holds the bit
    /// patterns of the pending queries (rebuilt from them with [`Capture::seen`]).
    pub fn offer(&mut self, seen: &mut HashSet<Vec<u32>>, vector: &[f32]) -> Offered {
        if self.state != CaptureState::Capturing || self.pending.len() >= self.want {
            return Offered::Ignored;
        }
        if !seen.insert(bits(vector)) {
            return Offered::Ignored;
        }
        let n = self.pending.len();
        self.pending.push(Query {
            id: format!("c{n}"),
            vector: vector.to_vec(),
        });
        if self.pending.len() == self.want {
            Offered::Completed
        } else {
            Offered::Added(self.pending.len())
        }
    }

    /// The bit patterns of the pending queries.
    pub fn seen(&self) -> HashSet<Vec<u32>> {
        self.pending.iter().map(|q| bits(&q.vector)).collect()
    }

    /// Ends the capture: its pending queries, to become the harness's.
    pub fn complete(&mut self) -> Vec<Query> {
        self.state = CaptureState::Complete;
        self.revision += 1;
        std::mem::take(&mut self.pending)
    }

    /// Starts collecting again (a refresh); the complete queries stay until it completes.
    pub fn restart(&mut self) {
        self.state = CaptureState::Capturing;
        self.pending.clear();
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    // -0.0 and 0.0 are the same query
    v.iter()
        .map(|x| if *x == 0.0 { 0 } else { x.to_bits() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate() -> SampleRate {
        SampleRate::parse("sample_rate", 1.0).unwrap()
    }

    #[test]
    fn repeats_are_one_query_and_the_last_one_completes() {
        let mut c = Capture::new(3, rate());
        let mut seen = c.seen();
        assert_eq!(c.offer(&mut seen, &[1.0, 2.0]), Offered::Added(1));
        assert_eq!(c.offer(&mut seen, &[1.0, 2.0]), Offered::Ignored);
        assert_eq!(c.offer(&mut seen, &[-0.0, 2.0]), Offered::Added(2));
        assert_eq!(c.offer(&mut seen, &[0.0, 2.0]), Offered::Ignored);
        assert_eq!(c.have(0), 2);
        assert_eq!(c.offer(&mut seen, &[3.0, 2.0]), Offered::Completed);
        assert_eq!(c.offer(&mut seen, &[4.0, 2.0]), Offered::Ignored);
        let qs = c.complete();
        assert_eq!(qs.len(), 3);
        assert_eq!(
            qs.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
            ["c0", "c1", "c2"]
        );
        assert_eq!((c.state, c.revision, c.have(3)), (CaptureState::Complete, 1, 3));
    }

    #[test]
    fn a_restart_collects_anew_and_bumps_the_revision_when_done() {
        let mut c = Capture::new(1, rate());
        let mut seen = c.seen();
        assert_eq!(c.offer(&mut seen, &[1.0]), Offered::Completed);
        c.complete();
        c.restart();
        let mut seen = c.seen();
        assert_eq!(c.have(1), 0);
        // the same vector as the last capture's is welcome in a new one
        assert_eq!(c.offer(&mut seen, &[1.0]), Offered::Completed);
        c.complete();
        assert_eq!(c.revision, 2);
    }

    #[test]
    fn stored_form_round_trips() {
        let mut c = Capture::new(2, rate());
        let mut seen = c.seen();
        c.offer(&mut seen, &[0.5]);
        let back: Capture = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.seen(), seen);
    }
}
