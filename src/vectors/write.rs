//! Writes to an index: appends, upserts and deletes, each one manifest.
//!
//! A write stores its new objects first — the segment of new rows, the tombstone of the
//! rows it deletes — then the next manifest naming them, created only if that version is
//! still free. A crash before the manifest leaves unreferenced objects and nothing visible;
//! after it, the whole write. Deletes are rows, not ids: rows keep their numbers (graphs
//! built before still refer to them, searches pass through them and never return them),
//! and an id deleted may be appended again as a new row.
//!
//! Appends that arrive while another write holds the index are committed together by the
//! next holder (group commit): one segment and one manifest for all of them, each still
//! all-or-nothing on its own (a batch whose id is stored, or taken by an earlier batch of
//! the group, is refused alone). A durable write is a few fsyncs whatever its size, so a
//! stream of small appends from many clients costs a few fsyncs a group, not a few each.

use super::*;

/// An append waiting for the index's lock, and where its answer goes.
pub(super) struct Pending {
    batch: Batch,
    done: tokio::sync::oneshot::Sender<Result<(usize, u64)>>,
}

impl Indexes {
    /// Appends a parsed batch: refused whole if any id is stored already; otherwise the
    /// segment is written, then the next manifest, then the cache is updated — together with
    /// the other appends waiting for the index at that moment. Returns `(appended, total)`.
    pub async fn append(&self, index: &Index, batch: Batch) -> Result<(usize, u64)> {
        let (done, mut answer) = tokio::sync::oneshot::channel();
        lock_pending(index).push(Pending { batch, done });
        let gone = || VectorsError::Conflict(index.meta.name.clone());
        // Wait for our answer or for the index, whichever comes first. Waiting for the lock
        // alone would hold an answered append behind the next group's whole commit (the
        // lock is handed on in order), so a stream from many clients would commit one at a
        // time: measured, 16 connections on a local disk made groups of 1.
        let mut state = tokio::select! {
            biased;
            a = &mut answer => return a.unwrap_or_else(|_| Err(gone())),
            state = index.state.lock() => state,
        };
        // whoever holds the index next commits every append waiting, ours included
        // (unless a holder before took it already)
        let group = std::mem::take(&mut *lock_pending(index));
        if !group.is_empty() {
            self.commit_group(index, &mut state, group).await;
        }
        drop(state);
        // no answer: the holder that took ours was cancelled mid-commit (its client went
        // away); whether the group landed is unknown, so this is not acknowledged — retry
        answer.await.unwrap_or_else(|_| Err(gone()))
    }

    /// Commits a group of appends as one write: each batch checked against the stored ids
    /// and those of the batches before it, the refused answered alone, the rest stored as
    /// one segment. If that write fails, each batch is tried alone, so every caller gets its
    /// own answer.
    async fn commit_group(&self, index: &Index, state: &mut IndexState, group: Vec<Pending>) {
        let set = match self.ensure_cache(index, state).await {
            Ok(s) => s,
            Err(e) => {
                let name = index.meta.name.clone();
                let mut first = Some(e);
                for p in group {
                    let e = first
                        .take()
                        .unwrap_or_else(|| VectorsError::Conflict(name.clone()));
                    p.done.send(Err(e)).ok();
                }
                return;
            }
        };
        let mut taken: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut accepted = Vec::with_capacity(group.len());
        for p in &group {
            let clash = p
                .batch
                .ids
                .iter()
                .find(|id| set.position(id).is_some() || taken.contains(id.as_str()));
            match clash {
                Some(id) => accepted.push(Err(id.clone())),
                None => {
                    taken.extend(p.batch.ids.iter().map(String::as_str));
                    accepted.push(Ok(()));
                }
            }
        }
        let ok: Vec<&Batch> = group
            .iter()
            .zip(&accepted)
            .filter(|(_, a)| a.is_ok())
            .map(|(p, _)| &p.batch)
            .collect();
        let combined = Batch {
            ids: ok.iter().flat_map(|b| b.ids.iter().cloned()).collect(),
            data: ok.iter().flat_map(|b| b.data.iter().copied()).collect(),
        };
        drop(taken);
        let outcome = if combined.is_empty() {
            None
        } else {
            Some(
                self.write_retrying(
                    index,
                    state,
                    Write::Append {
                        batch: Arc::new(combined),
                        upsert: false,
                    },
                )
                .await,
            )
        };
        match outcome {
            Some(Err(_)) => {
                // each alone: its own success or its own error
                for (p, a) in group.into_iter().zip(accepted) {
                    let answer = match a {
                        Err(id) => Err(VectorsError::DuplicateStored(id)),
                        Ok(()) => {
                            let n = p.batch.len();
                            self.write_retrying(
                                index,
                                state,
                                Write::Append {
                                    batch: Arc::new(p.batch),
                                    upsert: false,
                                },
                            )
                            .await
                            .map(|(_, total)| (n, total))
                        }
                    };
                    p.done.send(answer).ok();
                }
            }
            _ => {
                let total = index.total();
                for (p, a) in group.into_iter().zip(accepted) {
                    let answer = match a {
                        Err(id) => Err(VectorsError::DuplicateStored(id)),
                        Ok(()) => Ok((p.batch.len(), total)),
                    };
                    p.done.send(answer).ok();
                }
            }
        }
    }

    /// Appends a parsed batch replacing the ids already stored (each old row deleted, the
    /// new one appended), in one manifest: readers see all of it or none.
    pub async fn upsert(&self, index: &Index, batch: Batch) -> Result<(usize, u64)> {
        let batch = Arc::new(batch);
        self.write(index, Write::Append { batch, upsert: true }).await
    }

    /// Deletes the vectors of `ids`, all or none: an empty list, a repeated id or one not
    /// stored refuses the whole request. Durable (a tombstone object, then the next
    /// manifest) before it returns `(deleted, total)`.
    pub async fn delete_ids(&self, index: &Index, ids: Vec<String>) -> Result<(usize, u64)> {
        if ids.is_empty() {
            return Err(VectorsError::EmptyBatch);
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        for id in &ids {
            if !seen.insert(id.as_str()) {
                return Err(VectorsError::DuplicateInBatch(id.clone()));
            }
        }
        self.write(index, Write::Delete(ids)).await
    }

    async fn write(&self, index: &Index, write: Write) -> Result<(usize, u64)> {
        let mut state = index.state.lock().await;
        self.write_retrying(index, &mut state, write).await
    }

    async fn write_retrying(
        &self,
        index: &Index,
        state: &mut IndexState,
        write: Write,
    ) -> Result<(usize, u64)> {
        // another instance may write between our read and our write: its manifest wins
        // the version, we adopt it and go again (ids are checked against its vectors too)
        for _ in 1..APPEND_ATTEMPTS {
            match self.write_locked(index, state, &write).await {
                Err(VectorsError::Conflict(_)) => continue,
                other => return other,
            }
        }
        self.write_locked(index, state, &write).await
    }

    /// Appends contiguous rows with ids assigned as decimal row numbers continuing from the
    /// index's rows ever appended (decided under the index's lock, so concurrent appends
    /// cannot hand out the same id, and a deleted row's number is never handed out again).
    /// Returns `(appended, total, first_id, last_id)`.
    pub async fn append_rows(&self, index: &Index, data: Vec<f32>) -> Result<(usize, u64, String, String)> {
        let dims = index.meta.dims.get();
        let n = data.len() / dims;
        let mut state = index.state.lock().await;
        let ids_from =
            |start: u64| -> Vec<String> { (start..start + n as u64).map(|i| i.to_string()).collect() };
        let mut batch = Arc::new(Batch::from_rows(
            &index.meta,
            ids_from(state.manifest.total),
            data,
        )?);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // ids continue from the total of the manifest we write after (the previous
            // attempt's write is gone, so the batch is ours alone again)
            if let Some(b) = Arc::get_mut(&mut batch) {
                b.ids = ids_from(state.manifest.total);
            }
            let first = batch.ids.first().cloned().unwrap_or_default();
            let last = batch.ids.last().cloned().unwrap_or_default();
            let write = Write::Append {
                batch: batch.clone(),
                upsert: false,
            };
            match self.write_locked(index, &mut state, &write).await {
                Err(VectorsError::Conflict(_)) if attempt < APPEND_ATTEMPTS => continue,
                Err(e) => return Err(e),
                Ok((appended, total)) => return Ok((appended, total, first, last)),
            }
        }
    }

    /// One write under the index's lock: the new segment and the tombstone (the rows it
    /// deletes) stored first, then the next manifest naming them with `PutMode::Create`
    /// (a crash before it leaves unreferenced objects, never half a write), then the cache.
    /// Returns `(rows appended or deleted, vectors stored)`.
    async fn write_locked(
        &self,
        index: &Index,
        state: &mut IndexState,
        write: &Write,
    ) -> Result<(usize, u64)> {
        let mut set = self.ensure_cache(index, state).await?;
        let name = &index.meta.name;
        let (batch, dead): (Option<&Arc<Batch>>, Vec<u64>) = match write {
            Write::Append { batch, upsert: false } => {
                if let Some(dup) = batch.ids.iter().find(|id| set.position(id).is_some()) {
                    return Err(VectorsError::DuplicateStored(dup.clone()));
                }
                (Some(batch), Vec::new())
            }
            Write::Append { batch, upsert: true } => (
                Some(batch),
                batch
                    .ids
                    .iter()
                    .filter_map(|id| set.position(id))
                    .map(|r| r as u64)
                    .collect(),
            ),
            Write::Delete(ids) => {
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    match set.position(id) {
                        Some(r) => rows.push(r as u64),
                        None => return Err(VectorsError::UnknownId(id.clone())),
                    }
                }
                (None, rows)
            }
        };
        let mut next = state.manifest.clone();
        next.version += 1;
        next.updated_at = Some(Utc::now());
        let mut stored = compact::Stored::default();
        if let Some(batch) = batch {
            let dims = index.meta.dims.get();
            // the rows go into the object as they are (no second copy of a big append)
            let bytes = {
                let batch = Arc::clone(batch);
                blocking(move || segment::encode_parts(dims, &batch.ids, BatchRows(batch.clone()))).await?
            };
            next.total += batch.len() as u64;
            let stored_so_far = self
                .store_segment(name, dims, &mut next, bytes, batch.len() as u64, &mut stored)
                .await;
            if let Err(e) = stored_so_far {
                self.forget(&stored.written).await;
                return Err(e);
            }
        }
        if !dead.is_empty() {
            next.deleted += dead.len() as u64;
            if let Err(e) = self
                .store_tombstone(name, &mut next, dead.clone(), &mut stored)
                .await
            {
                self.forget(&stored.written).await;
                return Err(e);
            }
        }
        let created = match self
            .storage
            .put_json_new(&keys::manifest(name, next.version), &next)
            .await
        {
            Ok(()) => self.after_create(name, state, next.version).await,
            Err(StorageError::AlreadyExists { .. }) => Err(VectorsError::Conflict(name.clone())),
            Err(e) => Err(e.into()),
        };
        match created {
            Ok(()) => {}
            Err(VectorsError::Conflict(_)) => {
                // Another process wrote first. Our objects stay unreferenced (harmless, and
                // removed here); drop our view so the next call re-reads the winner's manifest.
                self.forget(&stored.written).await;
                if let Some((_, key)) = self.storage.latest_version(&keys::manifests(name)).await? {
                    if let Some(m) = self.storage.get_json::<Manifest>(&key).await? {
                        index.adopt(&m);
                        state.manifest = m;
                    }
                }
                return Err(VectorsError::Conflict(name.clone()));
            }
            Err(e) => return Err(e),
        }
        if !stored.replaced.is_empty() {
            state.replaced.push_back((next.version, stored.replaced));
        }
        let changed = batch.map_or(dead.len(), |b| b.len());
        {
            let set = Arc::make_mut(&mut set);
            for &row in &dead {
                set.delete_row(row as usize);
            }
            if let Some(batch) = batch {
                set.push_rows(&batch.ids, &batch.data);
            }
            set.manifest_version = next.version;
        }
        state.cache = Some(set.clone());
        index.current.store(Some(set));
        index.adopt(&next);
        let total = next.live();
        state.manifest = next;
        Ok((changed, total))
    }
}

impl Indexes {
    /// Deletes objects a write stored but no manifest names (best effort: what is left is
    /// unreferenced garbage, never visible).
    async fn forget(&self, keys: &[Path]) {
        for key in keys {
            self.storage.delete(key).await.ok();
        }
    }
}

/// One write of [`Indexes::write`].
enum Write {
    /// New rows; with `upsert`, ids already stored are deleted in the same manifest. Shared,
    /// so a retry and the encoding thread read the one batch.
    Append { batch: Arc<Batch>, upsert: bool },
    /// Rows deleted by id.
    Delete(Vec<String>),
}

/// A shared batch's rows, as the owner of a stored segment's payload.
struct BatchRows(Arc<Batch>);

impl AsRef<[f32]> for BatchRows {
    fn as_ref(&self) -> &[f32] {
        &self.0.data
    }
}

fn lock_pending(index: &Index) -> std::sync::MutexGuard<'_, Vec<Pending>> {
    index.pending.lock().unwrap_or_else(|p| p.into_inner())
}
