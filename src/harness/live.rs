//! Captures on a running service: starting one, offering it sampled search vectors, resuming
//! the unfinished ones after a restart, and refreshing a complete one (the data types are
//! in [`super::capture`]).

use super::*;

impl Harnesses {
    pub(super) fn live(&self) -> std::sync::MutexGuard<'_, HashMap<HarnessName, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn live_view(&self, name: &HarnessName) -> Option<CaptureView> {
        self.live().get(name).map(|l| CaptureView {
            state: l.capture.state,
            have: l.capture.have(l.harness.queries.len()),
            want: l.capture.want,
        })
    }

    /// Starts capturing `want` distinct search vectors of `index` into a new harness
    /// `name` (refused like any new harness: a taken name is 409). The caller taps the
    /// index's searches into [`Harnesses::offer`].
    pub async fn start_capture(
        &self,
        name: HarnessName,
        index: &Index,
        want: i64,
        k: i64,
        sample_rate: Option<f64>,
    ) -> Result<HarnessView> {
        let k = check_k(k, index)?;
        if want < 1 {
            return Err(HarnessError::NoQueries);
        }
        if want > MAX_QUERIES as i64 {
            return Err(HarnessError::TooManyQueries {
                requested: want,
                available: MAX_QUERIES as u64,
            });
        }
        let rate = sample_rate.unwrap_or(1.0);
        let rate = SampleRate::parse("sample_rate", rate)
            .ok()
            .filter(|r| r.get() > 0.0)
            .ok_or(HarnessError::InvalidSampleRate(rate))?;
        let capture = Capture::new(want as usize, rate);
        let harness = Harness {
            name: name.clone(),
            index_name: index.meta().name.clone(),
            k,
            queries: Vec::new(),
            created_at: Utc::now(),
            autogen_seed: None,
            capture: Some(capture.clone()),
        };
        if self.load(&name).await?.is_some() {
            return Err(HarnessError::Exists(name));
        }
        match self.storage.put_json_new(&keys::harness(&name), &harness).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. }) => return Err(HarnessError::Exists(name)),
            Err(e) => return Err(e.into()),
        }
        let harness = Arc::new(harness);
        self.cache().insert(name.clone(), (harness.clone(), None));
        self.track(harness.clone(), capture);
        let capture = self.live_view(&name);
        Ok(HarnessView {
            harness,
            ground_truth: None,
            capture,
        })
    }

    fn track(&self, harness: Arc<Harness>, capture: Capture) {
        let seen = capture.seen();
        let stored_at = capture.pending.len();
        self.live().insert(
            harness.name.clone(),
            Live {
                harness,
                capture,
                seen,
                stored_at,
            },
        );
    }

    /// Captures under way after a restart, as stored: `(harness, index, sample rate)`, now
    /// tracked again so their searches can be tapped.
    pub async fn resume_captures(&self) -> Result<Vec<(HarnessName, IndexName, SampleRate)>> {
        let mut out = Vec::new();
        for name in self.storage.list_children(&keys::harnesses_root()).await? {
            let Ok(name) = HarnessName::parse(name) else {
                continue;
            };
            let Some((h, _)) = self.load(&name).await? else {
                continue;
            };
            if let Some(c) = h.capture.clone().filter(|c| c.state == CaptureState::Capturing) {
                out.push((name, h.index_name.clone(), c.sample_rate));
                self.track(h, c);
            }
        }
        Ok(out)
    }

    /// Starts a new capture of a complete captured harness (the agent's
    /// `refresh_harness`); its queries stay until the new capture completes. Returns the
    /// index and sample rate to tap.
    pub async fn refresh_capture(&self, name: &HarnessName) -> Result<(IndexName, SampleRate)> {
        let (h, _) = self
            .load(name)
            .await?
            .ok_or_else(|| HarnessError::NotFound(name.clone()))?;
        let mut c = h.capture.clone().ok_or(HarnessError::NotRefreshable(
            name.clone(),
            "was not captured from live searches",
        ))?;
        if c.state == CaptureState::Capturing || self.live().contains_key(name) {
            return Err(HarnessError::NotRefreshable(name.clone(), "is capturing already"));
        }
        c.restart();
        let stored = Harness {
            capture: Some(c.clone()),
            ..(*h).clone()
        };
        self.storage
            .put_json_overwrite(&keys::harness(name), &stored)
            .await?;
        let stored = Arc::new(stored);
        let gt = self.cache().get(name).and_then(|e| e.1.clone());
        self.cache().insert(name.clone(), (stored.clone(), gt));
        let (index, rate) = (stored.index_name.clone(), c.sample_rate);
        self.track(stored, c);
        Ok((index, rate))
    }

    /// Offers a sampled search vector to capture `name`. Progress is stored every tenth
    /// of the way; on the last query wanted the queries become the harness's (stored in one
    /// overwrite), its old ground truth is dropped, and `Completed` tells the caller to
    /// untap it and compute the new one.
    pub async fn offer(&self, name: &HarnessName, vector: &[f32]) -> Result<Offered> {
        let (offered, store) = {
            let mut live = self.live();
            let Some(l) = live.get_mut(name) else {
                return Ok(Offered::Ignored);
            };
            let offered = l.capture.offer(&mut l.seen, vector);
            let step = (l.capture.want / 10).max(1);
            let store = match offered {
                Offered::Added(n) if n >= l.stored_at + step => {
                    l.stored_at = n;
                    Some(Harness {
                        capture: Some(l.capture.clone()),
                        ..(*l.harness).clone()
                    })
                }
                Offered::Completed => {
                    let mut c = l.capture.clone();
                    let queries = c.complete();
                    let done = Harness {
                        queries,
                        capture: Some(c),
                        ..(*l.harness).clone()
                    };
                    live.remove(name);
                    Some(done)
                }
                _ => None,
            };
            (offered, store)
        };
        if let Some(h) = store {
            let key = keys::harness(name);
            if offered == Offered::Completed {
                // the old revision's ground truth can never be current again
                let _one_at_a_time = self.gt_lock.lock().await;
                self.storage.delete_prefix(&keys::ground_truths(name)).await?;
                self.storage.put_json_overwrite(&key, &h).await?;
                self.cache().insert(name.clone(), (Arc::new(h), None));
                tracing::info!(harness = %name, "capture complete");
            } else {
                self.storage.put_json_overwrite(&key, &h).await?;
            }
        }
        Ok(offered)
    }
}
