//! The vectors of one index as searches and builds read them: rows in one flat `f32` array
//! (row `i` at `i·dims`), ids kept compactly beside them, queries prepared the way rows
//! were (normalised for cosine).

use crate::distance::{normalize, Metric};

use std::sync::Arc;

use super::rows::{Rows, Shared};
use super::IndexMeta;

/// Ids stored compactly: the bytes of every id in one buffer with end offsets, and a hash
/// table of row numbers keyed by the id's hash (the id itself is not stored twice). For
/// 100k short ids this is ~2 MB where `Vec<String>` plus `HashMap<String, u32>` took ~13 MB.
///
/// Why shared and sharded: every write makes the next snapshot of an index's vectors while
/// searches read the last one. The bytes and offsets are append-only buffers every snapshot
/// shares ([`Shared`]); the table is [`SHARDS`] tables by hash, each behind an `Arc`, so a
/// write copies only the shards it touches — at 1M ids a whole-table copy was ~20 MB a write.
#[derive(Clone)]
pub(super) struct Ids {
    buf: Shared<u8>,
    ends: Shared<u64>,
    rows: Vec<Arc<hashbrown::HashTable<u32>>>,
    hasher: std::hash::RandomState,
}

/// Shards of the id table, by bits 32..38 of an id's hash: the table itself uses the low
/// bits (bucket) and the top seven (tag), so within a shard both still vary.
const SHARDS: usize = 64;

impl Default for Ids {
    fn default() -> Ids {
        Ids {
            buf: Shared::default(),
            ends: Shared::default(),
            rows: (0..SHARDS).map(|_| Arc::default()).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl std::fmt::Debug for Ids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ids({})", self.len())
    }
}

fn shard(h: u64) -> usize {
    (h >> 32) as usize % SHARDS
}

impl Ids {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.len() == 0
    }

    fn get(&self, i: usize) -> &str {
        id_at(self.buf.as_slice(), self.ends.as_slice(), i)
    }

    fn position(&self, id: &str) -> Option<usize> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(id);
        let (buf, ends) = (self.buf.as_slice(), self.ends.as_slice());
        self.rows[shard(h)]
            .find(h, |&r| id_at(buf, ends, r as usize) == id)
            .map(|&r| r as usize)
    }

    /// Forgets row `row`'s id (the row was deleted): `position` no longer finds it, so the
    /// id may be appended again (a new row).
    fn forget(&mut self, row: usize) {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(self.get(row));
        if let Ok(entry) = Arc::make_mut(&mut self.rows[shard(h)]).find_entry(h, |&r| r as usize == row) {
            entry.remove();
        }
    }

    fn push(&mut self, id: &str) {
        use std::hash::BuildHasher;
        let row = self.ends.len() as u32;
        self.buf.extend(id.as_bytes(), |_| {});
        self.ends.extend(&[self.buf.len() as u64], |_| {});
        let h = self.hasher.hash_one(id);
        let Ids {
            buf,
            ends,
            rows,
            hasher,
        } = self;
        let (buf, ends) = (buf.as_slice(), ends.as_slice());
        Arc::make_mut(&mut rows[shard(h)])
            .insert_unique(h, row, |&r| hasher.hash_one(id_at(buf, ends, r as usize)));
    }
}

/// Id `i`: its bytes were pushed whole from a `&str`, so they are UTF-8 (checked anyway:
/// a few bytes, and a damaged id reads as empty rather than as undefined behaviour).
fn id_at<'a>(buf: &'a [u8], ends: &[u64], i: usize) -> &'a str {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    std::str::from_utf8(&buf[start..ends[i] as usize]).unwrap_or("")
}

/// An index's vectors in memory: contiguous rows (unit length for cosine) and their ids.
#[derive(Debug, Clone)]
pub struct VectorSet {
    pub(super) dims: usize,
    pub(super) metric: Metric,
    pub(super) ids: Ids,
    pub(super) data: Rows,
    pub(super) manifest_version: u64,
    /// Deleted rows, one bit a row. Rows keep their place (graphs built before a delete
    /// still refer to them; searches pass through them and never return them).
    pub(super) deleted: Vec<u64>,
    pub(super) deleted_count: usize,
}

impl VectorSet {
    pub(super) fn empty(meta: &IndexMeta) -> VectorSet {
        VectorSet {
            dims: meta.dims.get(),
            metric: meta.metric,
            ids: Ids::default(),
            data: Rows::default(),
            manifest_version: 0,
            deleted: Vec::new(),
            deleted_count: 0,
        }
    }

    /// Builds a set from rows (tests, benches); cosine rows are normalised.
    pub fn from_rows(dims: usize, metric: Metric, ids: Vec<String>, data: Vec<f32>) -> VectorSet {
        let mut set = VectorSet {
            dims,
            metric,
            ids: Ids::default(),
            data: Rows::default(),
            manifest_version: 0,
            deleted: Vec::new(),
            deleted_count: 0,
        };
        set.push_rows(&ids, &data);
        set
    }

    /// Marks row `row` deleted (a row out of range or deleted already is left as it is);
    /// whether it was live.
    pub fn delete_row(&mut self, row: usize) -> bool {
        if row >= self.len() || self.is_deleted(row) {
            return false;
        }
        let w = row / 64;
        if self.deleted.len() <= w {
            self.deleted.resize(w + 1, 0);
        }
        self.deleted[w] |= 1 << (row % 64);
        self.deleted_count += 1;
        self.ids.forget(row);
        true
    }

    /// Whether row `row` was deleted.
    #[inline]
    pub fn is_deleted(&self, row: usize) -> bool {
        self.deleted
            .get(row / 64)
            .is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    /// Rows deleted (they still count in [`VectorSet::len`]).
    pub fn deleted(&self) -> usize {
        self.deleted_count
    }

    /// Deleted rows among the first `rows`.
    pub fn deleted_below(&self, rows: usize) -> usize {
        let full = rows / 64;
        let mut n: usize = self
            .deleted
            .iter()
            .take(full)
            .map(|w| w.count_ones() as usize)
            .sum();
        if let Some(w) = self.deleted.get(full) {
            n += (w & ((1u64 << (rows % 64)) - 1)).count_ones() as usize;
        }
        n
    }

    /// Rows not deleted: the index's vectors.
    pub fn live(&self) -> usize {
        self.len() - self.deleted_count
    }

    /// The rows not deleted, in order.
    pub fn live_rows(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&r| !self.is_deleted(r))
    }

    pub(crate) fn push_rows(&mut self, ids: &[String], data: &[f32]) {
        let (dims, cosine) = (self.dims, self.metric == Metric::Cosine);
        self.data.extend(data, |rows| {
            if cosine {
                rows.chunks_exact_mut(dims).for_each(|r| {
                    normalize(r);
                });
            }
        });
        for id in ids {
            self.ids.push(id);
        }
    }

    /// Makes room for `rows` more rows at once (a load that knows its size).
    pub(super) fn reserve(&mut self, rows: usize) {
        self.data.reserve(rows * self.dims);
    }

    /// Number of rows, deleted ones included (row numbers are stable).
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Dimensions.
    pub fn dims(&self) -> usize {
        self.dims
    }
    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// All rows, contiguous.
    pub fn data(&self) -> &[f32] {
        self.data.as_slice()
    }
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data.as_slice()[i * self.dims..(i + 1) * self.dims]
    }
    /// Id of row `i`.
    pub fn id(&self, i: usize) -> &str {
        self.ids.get(i)
    }
    /// Row number of an id (a deleted row's id is not found).
    pub fn position(&self, id: &str) -> Option<usize> {
        self.ids.position(id)
    }
    /// The manifest version these vectors are (0 for an empty index).
    pub fn version(&self) -> u64 {
        self.manifest_version
    }
    /// Bytes held by the rows.
    pub fn data_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
    }
    /// Prepares a query for this set: checks its length and values, normalises it for
    /// cosine. `None` explains nothing; callers report dims/finite/zero themselves.
    pub fn prepare_query(&self, v: &[f32]) -> std::result::Result<Vec<f32>, QueryError> {
        if v.len() != self.dims {
            return Err(QueryError::Dims {
                expected: self.dims,
                got: v.len(),
            });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(QueryError::NonFinite);
        }
        let mut q = v.to_vec();
        if self.metric == Metric::Cosine && !normalize(&mut q) {
            return Err(QueryError::Zero);
        }
        Ok(q)
    }
}

/// Why a query vector cannot be searched.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// Wrong length.
    #[error("query has {got} dimensions, the index has {expected}")]
    Dims {
        /// The index's dims.
        expected: usize,
        /// What the query has.
        got: usize,
    },
    /// NaN or infinity.
    #[error("query has a non-finite value")]
    NonFinite,
    /// All zeros in a cosine index.
    #[error("query is all zeros: a cosine index cannot normalise it")]
    Zero,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot taken before writes keeps answering as it did (ids, positions), the newer
    /// one sees its appends and forgets, and 20k ids across every shard are all found.
    #[test]
    fn id_snapshots_are_independent_and_every_id_is_found() {
        let mut ids = Ids::default();
        for i in 0..20_000 {
            ids.push(&format!("id-{i}"));
        }
        let old = ids.clone();
        ids.forget(7);
        ids.push("id-7");
        ids.push("new");
        for i in (0..20_000).step_by(13) {
            assert_eq!(old.position(&format!("id-{i}")), Some(i));
        }
        assert_eq!(old.position("id-7"), Some(7));
        assert_eq!(old.position("new"), None);
        assert_eq!(old.len(), 20_000);
        assert_eq!(ids.position("id-7"), Some(20_000));
        assert_eq!(ids.position("new"), Some(20_001));
        assert_eq!((ids.get(7), ids.get(20_001)), ("id-7", "new"));
        assert_eq!(ids.position("id-19999"), Some(19_999));
        assert_eq!(ids.position("absent"), None);
        assert!(
            ids.rows.iter().all(|shard| !shard.is_empty()),
            "a shard never used"
        );
    }
}
