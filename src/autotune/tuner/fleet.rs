//! A run's builds spread over the fleet ([`crate::fleet::work`] has the protocol): the run
//! offers the graphs it is about to need, loads the ones another instance built, claims
//! the ones it builds itself, and clears its items when it ends; and the other side, one
//! offered graph built here for another instance's run.
//!
//! Only full-index builds are offered: a sample's builds are seconds and its rows exist
//! only in the run's memory; the full builds are the minutes a second instance can take.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::context::RunContext;
use super::{Result, Tuner, TunerError};
use crate::fleet::{BuildItem, Claim, Fleet, ItemState, LeaseRecord};
use crate::hnsw::{self, Graph};
use crate::metrics::BuildPurpose;
use crate::names::IndexName;
use crate::params::{GraphId, HnswConfig};
use crate::storage::keys;
use crate::vectors::VectorSet;

/// How often a run waiting for another instance's build looks at its item.
const WAIT: Duration = Duration::from_millis(200);
/// TTLs a run waits on a builder whose claim renews without its build moving (stuck, or
/// its process busy with something else) before it builds the graph itself — or three
/// times the longest the build went without moving before, if longer. A build's progress
/// moves every round (at most 2 % of its rows), and a claim's renewal carries it every
/// third of a TTL.
const STALL_TTLS: u32 = 4;

/// A claim a run waits on, watched for progress: its epoch and reported progress, since
/// when they have not moved, and the longest they went without moving before.
struct StallWatch {
    seen: Option<((u64, Option<String>), tokio::time::Instant)>,
    longest: Duration,
    /// The least patience: [`STALL_TTLS`] TTLs.
    least: Duration,
}

impl StallWatch {
    fn new(ttl: Duration) -> StallWatch {
        StallWatch {
            seen: None,
            longest: Duration::ZERO,
            least: ttl * STALL_TTLS,
        }
    }

    /// Notes the claim as now read; whether it has gone without moving for longer than the
    /// patience (the least, or three times its longest pause before).
    fn stalled(&mut self, claim: &LeaseRecord) -> bool {
        let now = (claim.epoch, claim.status.clone());
        match &self.seen {
            Some((was, _)) if *was == now => {}
            Some((_, since)) => {
                self.longest = self.longest.max(since.elapsed());
                self.seen = Some((now, tokio::time::Instant::now()));
            }
            None => self.seen = Some((now, tokio::time::Instant::now())),
        }
        let patience = self.least.max(self.longest * 3);
        self.seen
            .as_ref()
            .is_some_and(|(_, since)| since.elapsed() >= patience)
    }
}

/// What a run offered the fleet.
pub(super) struct Offers {
    fleet: Arc<Fleet>,
    /// The run's id (its items' folder).
    run: Uuid,
    /// Its autotune lease's epoch (fences what helpers store).
    epoch: u64,
    /// The index's rows the run measures, and of them deleted (fixed for the run).
    rows: u64,
    deleted: u64,
    /// By links (a twin quantization's graph serves too), with the config offered.
    offered: Vec<(GraphId, HnswConfig)>,
    /// Offers seen claimed or built (by links): kept whatever the climb wants next.
    taken: Vec<GraphId>,
    /// The next offer's place in the run's order of need.
    seq: u32,
    /// Graphs another instance built and this run loaded (by links; a reload after the
    /// run's cache dropped one is not another build).
    loaded: Vec<GraphId>,
    /// Offers whose builder stalled (by links): built here, never offered or waited on again.
    abandoned: Vec<GraphId>,
}

impl Offers {
    /// Graphs another instance built for the run.
    pub(super) fn elsewhere(&self) -> usize {
        self.loaded.len()
    }

    /// A run over `set` (the full index) under the autotune lease of `epoch`.
    pub(super) fn new(fleet: Arc<Fleet>, epoch: u64, set: &VectorSet) -> Offers {
        Offers {
            fleet,
            run: Uuid::now_v7(),
            epoch,
            rows: set.len() as u64,
            deleted: set.deleted_below(set.len()) as u64,
            offered: Vec::new(),
            taken: Vec::new(),
            seq: 0,
            loaded: Vec::new(),
            abandoned: Vec::new(),
        }
    }
}

/// Where a graph the run needs comes from.
pub(super) enum Fetched {
    /// Another instance built it: loaded from the store, with its build's time; whether
    /// this is the run's first load of it (a build to count).
    Graph(Box<Graph>, bool),
    /// Build it here (under the item's claim when it was offered, so nobody else starts it).
    Here(Option<Arc<Claim>>),
    /// The run was cancelled while it waited.
    Cancelled,
}

/// A graph this instance built for another instance's run.
#[derive(Debug, Clone)]
pub struct BuiltForFleet {
    /// The index.
    pub index: IndexName,
    /// The config built.
    pub config: HnswConfig,
    /// Seconds the build took.
    pub build_secs: f64,
}

impl Tuner {
    /// Offers the fleet the graphs of `configs` (soonest needed first) this run neither
    /// holds nor offered yet, on the full index only and only while another instance is
    /// alive; earlier offers no longer among them are withdrawn unless someone builds them
    /// already (the climb turned). Offers are by links: a graph built in one quantization
    /// serves its twins too, their codes derived without a build.
    pub(super) async fn offer_in(&self, ctx: &mut RunContext, configs: &[HnswConfig]) -> Result<()> {
        let engine = self.parts.build_options.engine;
        // alone on the bucket or on a sample: nothing offered, nothing looked at
        if !ctx.on_full() || !ctx.offers.as_ref().is_some_and(|o| o.fleet.others_alive()) {
            return Ok(());
        }
        let index = ctx.index.clone();
        let fresh: Vec<HnswConfig> = configs.iter().copied().filter(|c| !ctx.holds(c)).collect();
        let Some(o) = ctx.offers.as_mut() else {
            return Ok(());
        };
        let wanted: Vec<GraphId> = configs.iter().map(|c| c.links_id(engine)).collect();
        let mut kept = Vec::with_capacity(o.offered.len());
        for (id, config) in std::mem::take(&mut o.offered) {
            let folder = keys::build_item(&index, o.run, id);
            // an offer someone took is never withdrawn, so it is looked at once: a climb
            // step costs no store request when its offers did not change
            if wanted.contains(&id) || o.taken.contains(&id) {
                kept.push((id, config));
            } else if o.fleet.item_state(&folder).await? == ItemState::Open {
                o.fleet.drop_item(&folder).await?;
            } else {
                o.taken.push(id);
                kept.push((id, config));
            }
        }
        o.offered = kept;
        for config in fresh {
            let id = config.links_id(engine);
            if o.offered.iter().any(|(i, _)| *i == id) || o.abandoned.contains(&id) {
                continue;
            }
            let item = BuildItem {
                run: o.run,
                owner: o.fleet.id(),
                autotune_epoch: o.epoch,
                rows: o.rows,
                deleted: o.deleted,
                config,
                engine,
                seq: o.seq,
                created_at: Utc::now(),
            };
            o.seq += 1;
            o.fleet.offer(&keys::build_item(&index, o.run, id), &item).await?;
            o.offered.push((id, config));
        }
        Ok(())
    }

    /// The graph of `config` if another instance built it for this run; while a live claim
    /// of another instance builds it, waits for it (it started first); otherwise claims
    /// the item (a dead builder's too: re-leased) and says to build here.
    pub(super) async fn fetch_in(&self, ctx: &mut RunContext, config: HnswConfig) -> Result<Fetched> {
        let engine = self.parts.build_options.engine;
        let id = config.links_id(engine);
        let on_full = ctx.on_full();
        let Some((o, offered)) = ctx
            .offers
            .as_ref()
            .filter(|_| on_full)
            .and_then(|o| o.offered.iter().find(|(i, _)| *i == id).map(|(_, c)| (o, *c)))
        else {
            return Ok(Fetched::Here(None));
        };
        let (fleet, folder) = (o.fleet.clone(), keys::build_item(&ctx.index, o.run, id));
        let mut watch = StallWatch::new(fleet.options().ttl);
        loop {
            match fleet.item_state(&folder).await? {
                ItemState::Done(done) => {
                    let set = ctx.full_set().clone();
                    let g = crate::serving::load_kept(
                        &self.parts.storage,
                        &ctx.index,
                        set.clone(),
                        offered,
                        engine,
                    )
                    .await?;
                    let Some(g) = g else {
                        tracing::warn!(index = %ctx.index, ?config, "a graph built elsewhere did not load; building it here");
                        return Ok(Fetched::Here(None));
                    };
                    tracing::info!(index = %ctx.index, ?config, builder = %done.builder, secs = done.build_secs,
                        "autotune: graph built by another instance loaded");
                    let secs = Duration::from_secs_f64(done.build_secs.max(0.0));
                    let mut first = false;
                    if let Some(o) = ctx.offers.as_mut().filter(|o| !o.loaded.contains(&id)) {
                        o.loaded.push(id);
                        first = true;
                    }
                    // built in a twin quantization: the same links, this config's codes
                    let g = if offered.quantization == config.quantization {
                        g
                    } else {
                        let layout = g.links();
                        let engine = g.engine();
                        tokio::task::spawn_blocking(move || {
                            Graph::from_layout(layout, &set, config, engine, secs)
                        })
                        .await
                        .map_err(TunerError::Task)?
                    };
                    return Ok(Fetched::Graph(Box::new(g.with_build_time(secs)), first));
                }
                ItemState::Claimed(claim) => {
                    if watch.stalled(&claim) {
                        // not waited on further: built here, the item left to its claimant
                        // (a late finish stores the same graph; the run's end clears it)
                        tracing::warn!(index = %ctx.index, ?config, holder = %claim.holder.instance,
                            "a build claimed by another instance made no progress; building it here");
                        if let Some(o) = ctx.offers.as_mut() {
                            o.offered.retain(|(i, _)| *i != id);
                            o.abandoned.push(id);
                        }
                        return Ok(Fetched::Here(None));
                    }
                    tokio::select! {
                        () = tokio::time::sleep(WAIT) => {}
                        () = ctx.cancel.cancelled() => return Ok(Fetched::Cancelled),
                    }
                }
                ItemState::Open => {
                    if let Some(claim) = fleet.claim(&folder).await? {
                        return Ok(Fetched::Here(Some(claim)));
                    }
                }
                ItemState::Gone => return Ok(Fetched::Here(None)),
            }
        }
    }

    /// The run built the graph of `config` itself under `claim` (or was cancelled while
    /// building it): its item is withdrawn (a released claim would leave it open, and a
    /// helper would build it again).
    pub(super) async fn built_here(
        &self,
        ctx: &mut RunContext,
        config: HnswConfig,
        claim: Arc<Claim>,
    ) -> Result<()> {
        let id = config.links_id(self.parts.build_options.engine);
        claim.retire();
        if let Some(o) = ctx.offers.as_mut() {
            o.offered.retain(|(i, _)| *i != id);
            o.fleet.drop_item(claim.folder()).await?;
        }
        Ok(())
    }

    /// Clears the run's items; the configs whose graphs were built elsewhere and stored
    /// (the caller deletes those that did not win).
    pub(super) async fn clear_offers(&self, ctx: &RunContext) -> Vec<HnswConfig> {
        let Some(o) = ctx.offers.as_ref() else {
            return Vec::new();
        };
        match o.fleet.clear_run(&ctx.index, o.run).await {
            Ok(built) => built,
            Err(e) => {
                tracing::warn!(index = %ctx.index, error = %e, "a run's build items were not cleared");
                Vec::new()
            }
        }
    }

    /// Builds one graph another instance's run offered, if this instance can: claimed,
    /// built under the claim (stopped when it is lost or `stop` fires), stored where
    /// activation loads it and marked done — both fenced by the claim and by the run's
    /// autotune lease. Items of runs that ended are deleted on the way. `None` when there
    /// was nothing to build (or the build was stopped or fenced).
    pub async fn build_offered(&self, stop: &CancellationToken) -> Result<Option<BuiltForFleet>> {
        if !self.parts.fleet_builds {
            return Ok(None);
        }
        // nothing listed while this instance's own builds hold every permit: it could
        // claim nothing (checked again when it claims)
        if self.parts.builds.available_permits() == 0 {
            return Ok(None);
        }
        let fleet = self.parts.claims.fleet().clone();
        for ix in self.parts.indexes.list() {
            let name = ix.meta().name.clone();
            // each run's lease is looked at once per pass, not once per item
            let mut runs: Vec<(Uuid, bool)> = Vec::new();
            for (folder, item) in fleet.offered(&name).await? {
                if item.owner == fleet.id() || item.engine != self.parts.build_options.engine {
                    continue;
                }
                let alive = match runs.iter().find(|(r, _)| *r == item.run) {
                    Some(&(_, alive)) => alive,
                    None => {
                        let alive = fleet.run_alive(&name, &item).await?;
                        runs.push((item.run, alive));
                        alive
                    }
                };
                if !alive {
                    fleet.drop_item(&folder).await?;
                    continue;
                }
                if fleet.item_state(&folder).await? != ItemState::Open {
                    continue;
                }
                let set = self.parts.indexes.vectors(&ix).await?;
                let rows = item.rows as usize;
                if set.len() != rows || set.deleted_below(rows) as u64 != item.deleted {
                    continue; // the index moved on: the run's own build covers it
                }
                // only with a build permit free: a helper busy with its own builds would
                // hold the item without building it while the run waits
                let Ok(permit) = self.parts.builds.clone().try_acquire_owned() else {
                    return Ok(None);
                };
                let Some(claim) = fleet.claim(&folder).await? else {
                    continue;
                };
                return self.build_item(&name, set, item, claim, permit, stop).await;
            }
        }
        Ok(None)
    }

    async fn build_item(
        &self,
        index: &IndexName,
        set: Arc<VectorSet>,
        item: BuildItem,
        claim: Arc<Claim>,
        permit: tokio::sync::OwnedSemaphorePermit,
        stop: &CancellationToken,
    ) -> Result<Option<BuiltForFleet>> {
        let fleet = self.parts.claims.fleet();
        // stopped when the claim is lost, the process stops, or the run ends or dies (its
        // lease no longer held at the item's epoch: nothing would load the graph)
        let run_gone = CancellationToken::new();
        let watch = tokio::spawn(watch_run(
            self.parts.claims.fleet().clone(),
            index.clone(),
            item.clone(),
            run_gone.clone(),
        ));
        let stop_all = stop.clone();
        let (lost, stop, gone) = (claim.lost().clone(), stop.clone(), run_gone.clone());
        // the claim's renewals carry the build's progress: a run waiting on it sees it move
        let progress: Arc<hnsw::native::BuildProgress> = Arc::default();
        let seen = progress.clone();
        claim.report(Box::new(move || seen.get()));
        let (options, rows, config, s) = (
            self.parts.build_options,
            item.rows as usize,
            item.config,
            set.clone(),
        );
        tracing::info!(index = %index, ?config, run = %item.run, epoch = claim.epoch(), "building a graph for another instance's autotune");
        self.parts.metrics.fleet_building(true);
        let graph = tokio::task::spawn_blocking(move || {
            hnsw::build_stoppable(&s, rows, config, options, progress, move || {
                lost.is_cancelled() || stop.is_cancelled() || gone.is_cancelled()
            })
        })
        .await;
        self.parts.metrics.fleet_building(false);
        watch.abort();
        drop(permit);
        let graph = graph.map_err(TunerError::Task)?;
        let Some(graph) = graph else {
            // given back only when this process stops (the run may re-lease it at once);
            // a lost claim or an ended run leaves nothing to give back, and a release
            // written after the run cleared its items would be a stray object
            if !stop_all.is_cancelled() || run_gone.is_cancelled() {
                claim.retire();
            }
            return Ok(None);
        };
        let build_secs = graph.build_time().as_secs_f64();
        self.parts.metrics.build(BuildPurpose::fleet, build_secs);
        // fenced twice: our claim still holds, and the run still holds its lease
        if !claim.verify().await? || !fleet.run_alive(index, &item).await? {
            tracing::warn!(index = %index, ?config, "a graph built for another instance was fenced off: not stored");
            return Ok(None);
        }
        let engine = options.engine;
        crate::serving::keep_graph(&self.parts.storage, index, &set, config, engine, Arc::new(graph)).await?;
        if !fleet.finish(&claim, build_secs).await? {
            return Ok(None);
        }
        Ok(Some(BuiltForFleet {
            index: index.clone(),
            config,
            build_secs,
        }))
    }
}

/// Cancels `gone` once the run of `item` no longer holds its autotune lease (looked at every
/// third of the TTL; a store error is a "maybe", so it keeps looking).
async fn watch_run(fleet: Arc<Fleet>, index: IndexName, item: BuildItem, gone: CancellationToken) {
    let every = (fleet.options().ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        if let Ok(false) = fleet.run_alive(&index, &item).await {
            tracing::info!(index = %index, run = %item.run, "the run of the graph being built ended: build stopped");
            gone.cancel();
            return;
        }
    }
}
