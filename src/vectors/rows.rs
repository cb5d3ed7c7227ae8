//! Rows that only grow at their end, shared by every snapshot of an index's vectors.
//!
//! Why: a write makes the next snapshot of an index's vectors while searches keep reading
//! the previous one (the serving generation holds its own, searches the newest). With the
//! rows in a plain `Vec`, every write copied all of them first — 51 MB for 100k × 128,
//! tens of milliseconds an append, whatever the append's size. Here every snapshot shares
//! one allocation and reads its own prefix of it; an append writes past the end of every
//! snapshot (never into what any of them can read), so it copies nothing until the
//! allocation is full, when it moves to one twice the size (amortised O(1) a row).

use std::sync::{Arc, Mutex};

/// One allocation of `cap` values, the first `filled` of them written (and never written
/// again).
struct Buf<T> {
    ptr: *mut T,
    cap: usize,
    /// Floats written so far: appends go here, readers never look.
    filled: Mutex<usize>,
}

// SAFETY: `ptr` owns its allocation (freed once, in `drop`). Readers only read floats below
// the `len` of their `Rows`, each of which was written before that `Rows` was made (and
// published to other threads through whatever shared it — an `Arc`, a lock — with release /
// acquire order); writes only go to floats at or past `filled`, under `filled`'s lock, which
// no `Rows` can read. So no float is read and written at once.
unsafe impl<T: Send + Sync> Send for Buf<T> {}
// SAFETY: as above: shared references only read the written prefix.
unsafe impl<T: Send + Sync> Sync for Buf<T> {}

impl<T: Copy + Default> Buf<T> {
    fn new(cap: usize) -> Buf<T> {
        // zero values (f32, u8, u64 here): a large zeroed allocation is mapped lazily, so
        // the spare capacity costs address space, not memory, until it is written
        let boxed: Box<[T]> = vec![T::default(); cap].into_boxed_slice();
        Buf {
            ptr: Box::into_raw(boxed) as *mut T,
            cap,
            filled: Mutex::new(0),
        }
    }
}

impl<T> Drop for Buf<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `cap` are the box made in `Buf::new`, released only here.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr, self.cap,
            )));
        }
    }
}

/// A prefix of a shared, append-only allocation: cheap to clone, and appending to the
/// newest clone writes in place. Rows of floats, and the ids' bytes and offsets.
pub(crate) struct Shared<T> {
    buf: Arc<Buf<T>>,
    len: usize,
}

/// An index's rows: floats, row after row.
pub(crate) type Rows = Shared<f32>;

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            buf: self.buf.clone(),
            len: self.len,
        }
    }
}

impl<T: Copy + Default> Default for Shared<T> {
    fn default() -> Shared<T> {
        Shared {
            buf: Arc::new(Buf::new(0)),
            len: 0,
        }
    }
}

impl<T> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shared({} of {})", self.len, self.buf.cap)
    }
}

impl<T: Copy + Default> Shared<T> {
    /// The values of this prefix.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` floats of the allocation were written before this `Rows`
        // existed and are never written again (see `Buf`); `len <= cap`.
        unsafe { std::slice::from_raw_parts(self.buf.ptr, self.len) }
    }

    /// Values held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Appends `data`, then lets `fix` change the appended values in place (before any
    /// other prefix can see them). In place when this is the newest prefix of its
    /// allocation and there is room; otherwise this prefix first moves to a new allocation
    /// (twice the size, or what it needs), leaving every other prefix reading the old one.
    pub(crate) fn extend(&mut self, data: &[T], fix: impl FnOnce(&mut [T])) {
        if data.is_empty() {
            return;
        }
        let need = self.len + data.len();
        loop {
            self.room_for(data.len(), self.buf.cap.saturating_mul(2).max(1024));
            let mut filled = self.buf.filled.lock().unwrap_or_else(|p| p.into_inner());
            if *filled != self.len || need > self.buf.cap {
                // another prefix of the allocation wrote since `room_for` looked: move
                continue;
            }
            // SAFETY: checked under `filled`'s lock: this is the newest prefix and
            // `need <= cap`, so values `len..need` lie at or past `filled` — no prefix reads
            // them, and the lock keeps any other writer out until `filled` moves past them.
            let out = unsafe { std::slice::from_raw_parts_mut(self.buf.ptr.add(self.len), data.len()) };
            out.copy_from_slice(data);
            fix(out);
            *filled = need;
            drop(filled);
            self.len = need;
            return;
        }
    }

    /// Makes room for `extra` more values at once (a load that knows its size).
    pub(crate) fn reserve(&mut self, extra: usize) {
        self.room_for(extra, 0);
    }

    /// Leaves this the newest prefix of an allocation with room for `extra` more values:
    /// as it is when it already is, else moved (its values copied) to a new allocation of
    /// at least `at_least` values.
    fn room_for(&mut self, extra: usize, at_least: usize) {
        let need = self.len + extra;
        let filled = *self.buf.filled.lock().unwrap_or_else(|p| p.into_inner());
        if filled == self.len && need <= self.buf.cap {
            return;
        }
        let next = Buf::new(need.max(at_least));
        // SAFETY: `next` is new and not shared yet: this is its only reference.
        let out = unsafe { std::slice::from_raw_parts_mut(next.ptr, self.len) };
        out.copy_from_slice(self.as_slice());
        *next.filled.lock().unwrap_or_else(|p| p.into_inner()) = self.len;
        self.buf = Arc::new(next);
    }

    /// Whether two prefixes share one allocation (tests).
    #[cfg(test)]
    fn shares(&self, other: &Shared<T>) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clones keep reading what they had while the newest grows in place; an older clone
    /// that appends forks, leaving the others as they were; contents always equal a plain
    /// `Vec` built the same way.
    #[test]
    fn snapshots_keep_their_prefix_and_appends_copy_nothing() {
        let mut a = Rows::default();
        a.reserve(4096);
        a.extend(&[1.0, 2.0], |_| {});
        let old = a.clone();
        a.extend(&[3.0, 4.0, 5.0], |x| x.iter_mut().for_each(|v| *v *= 10.0));
        assert_eq!(old.as_slice(), &[1.0, 2.0]);
        assert_eq!(a.as_slice(), &[1.0, 2.0, 30.0, 40.0, 50.0]);
        assert!(a.shares(&old), "an append to the newest copied");
        // the old snapshot appends: it must not write over a's floats
        let mut forked = old.clone();
        forked.extend(&[9.0], |_| {});
        assert_eq!(forked.as_slice(), &[1.0, 2.0, 9.0]);
        assert!(!forked.shares(&a));
        assert_eq!(a.as_slice(), &[1.0, 2.0, 30.0, 40.0, 50.0]);
        assert_eq!(old.as_slice(), &[1.0, 2.0]);
        // growth past the capacity moves to a new allocation, contents intact
        let mut want = a.as_slice().to_vec();
        for i in 0..5000 {
            let row = [i as f32, -(i as f32)];
            a.extend(&row, |_| {});
            want.extend_from_slice(&row);
        }
        assert_eq!(a.as_slice(), &want[..]);
        assert_eq!(a.len(), want.len());
        assert_eq!(old.as_slice(), &[1.0, 2.0]);
    }

    /// Two clones of one prefix extended at once on two threads: each ends with exactly its
    /// own values (the one that loses the race moves to an allocation of its own).
    #[test]
    fn two_writers_of_one_prefix_never_write_over_each_other() {
        for _ in 0..50 {
            let mut base = Rows::default();
            base.reserve(1 << 16);
            base.extend(&[0.5], |_| {});
            let (a, b) = std::thread::scope(|s| {
                let run = |v: f32| {
                    let mut mine = base.clone();
                    move || {
                        for _ in 0..2000 {
                            mine.extend(&[v], |_| {});
                        }
                        mine
                    }
                };
                let (ta, tb) = (s.spawn(run(1.0)), s.spawn(run(2.0)));
                (ta.join().unwrap(), tb.join().unwrap())
            });
            for (rows, v) in [(&a, 1.0), (&b, 2.0)] {
                assert_eq!(rows.as_slice()[0], 0.5);
                assert!(rows.as_slice()[1..].iter().all(|&x| x == v));
                assert_eq!(rows.len(), 2001);
            }
            assert_eq!(base.as_slice(), &[0.5]);
        }
    }

    /// Readers on other threads see their prefix whole while a writer appends.
    #[test]
    fn readers_on_other_threads_see_their_prefix_whole() {
        let shared = Arc::new(std::sync::RwLock::new(Rows::default()));
        std::thread::scope(|s| {
            let writer = shared.clone();
            s.spawn(move || {
                for i in 0..20_000 {
                    let mut next = writer.read().unwrap().clone();
                    next.extend(&[i as f32], |_| {});
                    *writer.write().unwrap() = next;
                }
            });
            for _ in 0..2 {
                let reader = shared.clone();
                s.spawn(move || {
                    for _ in 0..2000 {
                        let snap = reader.read().unwrap().clone();
                        let xs = snap.as_slice();
                        assert!(xs.iter().enumerate().all(|(i, &x)| x == i as f32));
                    }
                });
            }
        });
    }
}
