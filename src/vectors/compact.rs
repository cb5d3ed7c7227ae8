//! Keeping an index's manifest chain small under a stream of small writes.
//!
//! Every write is one segment (or tombstone) and one manifest listing all of them, so a
//! stream of single-row appends would make each manifest longer than the last and leave
//! every version behind: measured before this, 6,000 single-row appends left 998 MB of
//! manifests on disk and each write serialised a list of thousands of segments. Two rules
//! bound both:
//!
//! - **Size-tiered merging** (as LSM stores do): a segment's tier is `⌊log₈ rows⌋`; when a
//!   write would leave [`FANOUT`] or more trailing objects no bigger in tier than the newest,
//!   the write stores them as one object instead (read back, concatenated in order, the new
//!   rows last) and the manifest names that one. A row is rewritten about once per tier, so
//!   `log₈ n` times, and a manifest lists at most `(FANOUT − 1)` objects per tier. Tombstones
//!   (row lists) merge by the same rule.
//! - **Pruning**: a manifest is deleted once [`KEEP_MANIFESTS`] newer ones exist, and the
//!   objects a merge replaced are deleted with it, so an instance that read an older manifest
//!   a moment ago can still load what it names. A writer that creates a version pruned under
//!   it (its view was [`KEEP_MANIFESTS`] writes behind) would not be the newest: each write
//!   checks that no newer version exists after its create, and otherwise answers as the lost
//!   race it is (adopt the newest, go again), so pruning never loses an acknowledged write.

use bytes::Bytes;

use super::*;

/// Objects of one tier merged together.
pub(super) const FANOUT: usize = 8;
/// Manifest versions kept behind the newest.
pub(super) const KEEP_MANIFESTS: u64 = 8;

fn tier(count: u64) -> u32 {
    let mut t = 0;
    let mut c = count.max(1) / FANOUT as u64;
    while c > 0 {
        t += 1;
        c /= FANOUT as u64;
    }
    t
}

/// How many trailing objects of `counts` (rows each, oldest first, the new one last) to
/// store as one: 1 (the new one alone) unless [`FANOUT`] or more trailing ones are of the
/// newest's tier or below; merged ones are tiered again, so a merge may cascade.
pub(super) fn merge_tail(counts: &[u64]) -> usize {
    let mut counts = counts.to_vec();
    let mut merged = 1;
    loop {
        let Some(&last) = counts.last() else {
            return merged;
        };
        let t = tier(last);
        let run = counts.iter().rev().take_while(|&&c| tier(c) <= t).count();
        if run < FANOUT {
            return merged;
        }
        let sum = counts.split_off(counts.len() - run).iter().sum();
        counts.push(sum);
        // the objects merged: the `merged` of the last merge counted once, plus the others
        merged += run - 1;
    }
}

/// Objects a write stored that its manifest names, and those it replaced (deleted once the
/// manifest that last named them is pruned).
#[derive(Default)]
pub(super) struct Stored {
    pub written: Vec<Path>,
    pub replaced: Vec<Path>,
}

impl Indexes {
    /// Stores the new rows as a segment of `next`, merged with the trailing segments the
    /// tier rule says (their bytes read back, the new rows after them).
    pub(super) async fn store_segment(
        &self,
        name: &IndexName,
        dims: usize,
        next: &mut Manifest,
        fresh: Vec<Bytes>,
        count: u64,
        stored: &mut Stored,
    ) -> Result<()> {
        let mut counts: Vec<u64> = next.segments.iter().map(|s| s.count).collect();
        counts.push(count);
        let k = merge_tail(&counts);
        let older = next.segments.split_off(next.segments.len() + 1 - k);
        let bytes = if older.is_empty() {
            fresh
        } else {
            let mut parts = Vec::with_capacity(older.len() + 1);
            for s in &older {
                let key = keys::segment(name, s.id);
                let b = self
                    .storage
                    .get(&key)
                    .await?
                    .ok_or_else(|| VectorsError::MissingSegment(key.to_string()))?;
                parts.push((key.to_string(), b));
                stored.replaced.push(key);
            }
            // merged with older rows: one object rewritten anyway (small tiers only)
            let fresh: Vec<u8> = fresh.iter().flat_map(|b| b.iter().copied()).collect();
            parts.push((String::from("(new rows)"), Bytes::from(fresh)));
            blocking(move || concat_segments(dims, parts)).await??
        };
        let id = Uuid::now_v7();
        let key = keys::segment(name, id);
        self.storage.put_new_parts(&key, bytes).await?;
        stored.written.push(key);
        let count = count + older.iter().map(|s| s.count).sum::<u64>();
        next.segments.push(SegmentRef { id, count });
        Ok(())
    }

    /// Stores `rows` as a tombstone of `next`, merged with the trailing tombstones the tier
    /// rule says (their rows first, in the order they were deleted).
    pub(super) async fn store_tombstone(
        &self,
        name: &IndexName,
        next: &mut Manifest,
        rows: Vec<u64>,
        stored: &mut Stored,
    ) -> Result<()> {
        let mut counts: Vec<u64> = next.tombstones.iter().map(|t| t.count).collect();
        counts.push(rows.len() as u64);
        let k = merge_tail(&counts);
        let older = next.tombstones.split_off(next.tombstones.len() + 1 - k);
        let mut all = Vec::new();
        for t in &older {
            let key = keys::tombstone(name, t.id);
            let tomb = self
                .storage
                .get_json::<Tombstone>(&key)
                .await?
                .ok_or_else(|| VectorsError::MissingSegment(key.to_string()))?;
            all.extend(tomb.rows);
            stored.replaced.push(key);
        }
        all.extend(rows);
        let id = Uuid::now_v7();
        let key = keys::tombstone(name, id);
        self.storage
            .put_json_new(&key, &Tombstone { rows: all.clone() })
            .await?;
        stored.written.push(key);
        next.tombstones.push(SegmentRef {
            id,
            count: all.len() as u64,
        });
        Ok(())
    }

    /// After `version` was created: `Conflict` if version `version + KEEP_MANIFESTS` exists.
    /// A version is pruned only once that many newer ones exist, so then ours was created in
    /// a pruned slot: not the newest, never to be answered as written (its objects are
    /// forgotten by the caller and the write goes again on the newest). A legitimate create
    /// is never mistaken for one unless [`KEEP_MANIFESTS`] writes land between our create and
    /// this listing (then the write is reported lost although it landed — a retry finds its
    /// ids stored — never the other way round). Otherwise prunes the version
    /// [`KEEP_MANIFESTS`] behind and the objects replaced by then (best effort: a failure
    /// leaves garbage, never a dangling name).
    pub(super) async fn after_create(
        &self,
        name: &IndexName,
        state: &mut IndexState,
        version: u64,
    ) -> Result<()> {
        let newer = self
            .storage
            .list_after(&keys::manifests(name), &keys::manifest(name, version))
            .await?;
        let pruned_under_us = newer
            .iter()
            .any(|k| keys::version_of(k).is_some_and(|v| v >= version + KEEP_MANIFESTS));
        if pruned_under_us {
            self.storage.delete(&keys::manifest(name, version)).await.ok();
            return Err(VectorsError::Conflict(name.clone()));
        }
        if let Some(old) = version.checked_sub(KEEP_MANIFESTS) {
            self.storage.delete(&keys::manifest(name, old)).await.ok();
        }
        while state
            .replaced
            .front()
            .is_some_and(|(v, _)| v + KEEP_MANIFESTS <= version)
        {
            if let Some((_, keys)) = state.replaced.pop_front() {
                for key in keys {
                    self.storage.delete(&key).await.ok();
                }
            }
        }
        Ok(())
    }
}

/// One segment of the rows of `parts` (encoded segments), in order.
fn concat_segments(dims: usize, parts: Vec<(String, Bytes)>) -> Result<Vec<Bytes>> {
    let mut ids = Vec::new();
    let mut data = Vec::new();
    for (key, bytes) in parts {
        let seg = decode_segment(key, &bytes, dims)?;
        ids.extend(seg.ids);
        data.extend(seg.data);
    }
    // the merged rows go into the object as they are, like a fresh segment's
    Ok(segment::encode_parts(dims, &ids, data))
}

/// Rows per object of a manifest, for [`tests`] and the reload check.
#[cfg(test)]
pub(super) fn simulate(writes: &[u64]) -> (Vec<u64>, u64) {
    let mut objects: Vec<u64> = Vec::new();
    let mut rewritten = 0;
    for &w in writes {
        let mut counts = objects.clone();
        counts.push(w);
        let k = merge_tail(&counts);
        let older = objects.split_off(objects.len() + 1 - k);
        rewritten += older.iter().sum::<u64>();
        objects.push(w + older.iter().sum::<u64>());
    }
    (objects, rewritten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers() {
        assert_eq!(tier(0), 0);
        assert_eq!(tier(7), 0);
        assert_eq!(tier(8), 1);
        assert_eq!(tier(63), 1);
        assert_eq!(tier(64), 2);
    }

    #[test]
    fn a_stream_of_single_rows_keeps_few_objects_and_rewrites_each_row_a_few_times() {
        let n = 200_000u64;
        let (objects, rewritten) = simulate(&vec![1; n as usize]);
        assert_eq!(objects.iter().sum::<u64>(), n);
        let tiers = (tier(n) + 1) as usize;
        assert!(objects.len() <= (FANOUT - 1) * tiers, "{} objects", objects.len());
        assert!(rewritten <= n * tiers as u64, "{rewritten} rows rewritten");
        // and nothing merges before FANOUT objects are there
        assert_eq!(simulate(&[1; 7]).0, vec![1; 7]);
        assert_eq!(simulate(&[1; 8]).0, vec![8]);
    }

    #[test]
    fn mixed_sizes_stay_bounded_and_big_objects_are_left_alone() {
        let mut r = crate::rng::SplitMix64::new(7);
        let writes: Vec<u64> = (0..50_000)
            .map(|_| match r.next_u64() % 10 {
                0 => 1 + r.next_u64() % 5_000,
                _ => 1 + r.next_u64() % 4,
            })
            .collect();
        let n: u64 = writes.iter().sum();
        let (objects, rewritten) = simulate(&writes);
        assert_eq!(objects.iter().sum::<u64>(), n);
        let tiers = (tier(n) + 1) as usize;
        assert!(objects.len() <= FANOUT * tiers, "{} objects", objects.len());
        assert!(rewritten <= n * tiers as u64, "{rewritten} of {n} rows rewritten");
        // one big ingest followed by small writes: the big one is never read back
        let mut w = vec![1_000_000];
        w.extend(vec![1; 10_000]);
        let (objects, rewritten) = simulate(&w);
        assert_eq!(objects[0], 1_000_000);
        assert!(rewritten < 10_000 * tiers as u64);
    }

    fn one(i: &Index, id: &str, x: f32) -> Batch {
        let v = NewVector {
            id: id.into(),
            vector: vec![x, 1.0],
        };
        Batch::parse(i.meta(), vec![v]).unwrap()
    }

    /// The live ids of `set` with their first value, for comparing two loads.
    fn contents(set: &VectorSet) -> BTreeMap<String, f32> {
        (0..set.len())
            .filter(|&r| !set.is_deleted(r))
            .map(|r| (set.id(r).to_string(), set.row(r)[0]))
            .collect()
    }

    /// An index `i` (2-d, l2) on `s`, and a second registry over the same store holding it:
    /// another instance.
    async fn two_registries(s: &Storage) -> (Indexes, Arc<Index>, Indexes, Arc<Index>) {
        let name = IndexName::parse("i").unwrap();
        let a = Indexes::load(s.clone()).await.unwrap();
        let ai = a
            .create(name.clone(), Dims::parse(2).unwrap(), Metric::L2)
            .await
            .unwrap();
        let b = Indexes::load(s.clone()).await.unwrap();
        let bi = b.get(&name).unwrap();
        (a, ai, b, bi)
    }

    #[tokio::test]
    async fn small_writes_merge_prune_and_load_the_same_everywhere() {
        let s = Storage::in_memory();
        let name = IndexName::parse("i").unwrap();
        // another instance over the same store, adopting now and then (its cache is then
        // extended from merged objects it has partly loaded)
        let (ix, i, other, oi) = two_registries(&s).await;
        let mut model = BTreeMap::new();
        for t in 0..400u32 {
            let id = format!("v{t}");
            ix.append(&i, one(&i, &id, t as f32)).await.unwrap();
            model.insert(id.clone(), t as f32);
            if t % 11 == 10 {
                ix.upsert(&i, one(&i, &id, -(t as f32))).await.unwrap();
                model.insert(id, -(t as f32));
            }
            if t % 5 == 4 {
                let gone = format!("v{}", t - 1);
                ix.delete_ids(&i, vec![gone.clone()]).await.unwrap();
                model.remove(&gone);
            }
            if t % 37 == 0 {
                other.refresh().await.unwrap();
                let _ = other.vectors(&oi).await.unwrap();
            }
        }
        let set = ix.vectors(&i).await.unwrap();
        assert_eq!(contents(&set), model);
        let listed = |what: &'static str| {
            let s = s.clone();
            let name = name.clone();
            async move {
                s.list(&keys::index_prefix(&name))
                    .await
                    .unwrap()
                    .iter()
                    .filter(|k| k.as_ref().contains(what))
                    .count()
            }
        };
        assert!(listed("/manifests/").await <= KEEP_MANIFESTS as usize + 1);
        // the manifest names few objects, and few replaced ones wait for their deletion
        let m = i.state.lock().await.manifest.clone();
        assert!(
            m.segments.len() <= 3 * (FANOUT - 1),
            "{} segments",
            m.segments.len()
        );
        assert!(
            m.tombstones.len() <= 2 * (FANOUT - 1),
            "{} tombstones",
            m.tombstones.len()
        );
        assert!(listed("/segments/").await <= m.segments.len() + 2 * FANOUT * KEEP_MANIFESTS as usize);
        assert_eq!(m.total, 400 + 400 / 11);
        // the follower, a reload and the writer agree
        other.refresh().await.unwrap();
        assert_eq!(contents(&other.vectors(&oi).await.unwrap()), model);
        let again = Indexes::load(s.clone()).await.unwrap();
        let i2 = again.get(&name).unwrap();
        let reloaded = again.vectors(&i2).await.unwrap();
        assert_eq!(contents(&reloaded), model);
        assert_eq!(reloaded.len(), set.len());
        assert_eq!(i2.total(), model.len() as u64);
    }

    #[tokio::test]
    async fn a_writer_whose_version_was_pruned_goes_again_on_the_newest() {
        let s = Storage::in_memory();
        let name = IndexName::parse("i").unwrap();
        // b holds version 0; a then writes far past what is kept
        let (a, ai, b, bi) = two_registries(&s).await;
        for t in 0..(3 * KEEP_MANIFESTS) {
            a.append(&ai, one(&ai, &format!("a{t}"), t as f32)).await.unwrap();
        }
        assert!(
            s.get(&keys::manifest(&name, 1)).await.unwrap().is_none(),
            "version 1 pruned"
        );
        // b's create of version 1 succeeds in the pruned slot: it must not count as written
        let (n, total) = b.append(&bi, one(&bi, "late", -1.0)).await.unwrap();
        assert_eq!((n, total), (1, 3 * KEEP_MANIFESTS + 1));
        let again = Indexes::load(s.clone()).await.unwrap();
        let set = again.vectors(&again.get(&name).unwrap()).await.unwrap();
        assert_eq!(set.live(), 3 * KEEP_MANIFESTS as usize + 1);
        assert!(set.position("late").is_some() && set.position("a0").is_some());
        assert!(s.get(&keys::manifest(&name, 1)).await.unwrap().is_none());
    }

    /// Appends from many clients, each waiting for its answer before the next, on a store
    /// whose writes take real time (a directory, fsynced): an append answered inside a group
    /// returns at once instead of waiting for the index behind the next group's commit, so
    /// the groups stay large. Before, every answered append queued for the lock and the
    /// commits became one per append (200 manifests for 200 appends).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answered_appends_do_not_wait_behind_the_next_group() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::local(dir.path()).unwrap();
        let name = IndexName::parse("i").unwrap();
        let ix = Arc::new(Indexes::load(s.clone()).await.unwrap());
        let i = ix
            .create(name.clone(), Dims::parse(2).unwrap(), Metric::L2)
            .await
            .unwrap();
        let (clients, each) = (8u32, 25u32);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (ix, i) = (ix.clone(), i.clone());
                tokio::spawn(async move {
                    for k in 0..each {
                        ix.append(&i, one(&i, &format!("c{c}-{k}"), k as f32))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let commits = i.state.lock().await.manifest.version;
        assert_eq!(i.total(), (clients * each) as u64);
        assert!(
            commits <= (clients * each) as u64 / 2,
            "{commits} commits for {} appends",
            clients * each
        );
    }
}
