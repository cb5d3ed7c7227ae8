//! The service's metrics, in one explicit `prometheus-client` registry (nothing global, so
//! every test builds its own and reads exactly what it did).
//!
//! Counters and histograms are bumped where things happen (a request answered, a trial
//! journaled, a graph built, an autotune ended, an agent decided). Per-index gauges —
//! vectors, active generation, live recall — and the jobs and queue gauges are set from
//! the service's state at scrape time ([`Metrics::render`] takes a [`Snapshot`]), so they
//! can never drift from what `GET /vectors/indexes` says. Names are `vectune_…` with units
//! in them (`_seconds`, `_bytes`, `_ratio`); counters get `_total` from the encoder.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a request series: the route *template* (never the raw path, which would let
/// a client mint series), the method and the status as a number.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The matched route template, or `unmatched`.
    pub route: String,
    /// `200`, `404`, ...
    pub status: String,
}

/// Labels naming an index.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IndexLabels {
    /// The index name.
    pub index: String,
}

/// What built a graph.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum BuildPurpose {
    /// A trial or autotune measurement.
    trial,
    /// A serving generation.
    activation,
    /// A graph for another instance's autotune ([`crate::fleet`]'s build items).
    fleet,
}

/// Labels of a build series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Why it was built.
    pub purpose: BuildPurpose,
}

/// Labels with one `outcome`/`action`/`state` word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The word.
    pub outcome: String,
}

/// Labels of the agent's decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// `promoted`, `kept`, `activated`, `rolled_back`.
    pub action: String,
}

/// Labels of the jobs gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub state: String,
}

/// One index's state at scrape time.
#[derive(Debug, Clone)]
pub struct IndexSnapshot {
    /// Name.
    pub name: String,
    /// Vectors stored.
    pub vectors: u64,
    /// Serving generation, if active.
    pub generation: Option<u64>,
    /// Live recall of the serving generation, if sampled.
    pub live_recall: Option<f64>,
}

/// Labels of a lease series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// `autotune` or `agent`.
    pub kind: String,
    /// The index.
    pub index: String,
}

/// Labels of a per-kind lease counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `autotune` or `agent`.
    pub kind: String,
}

/// Labels naming this instance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Its id.
    pub instance: String,
    /// Its host.
    pub host: String,
}

/// The fleet as this instance sees it at scrape time.
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    /// This instance's id.
    pub instance: String,
    /// Its host.
    pub host: String,
    /// Live instances on the bucket (this one included), as of the last heartbeat.
    pub instances: u64,
    /// Leases held here: `(kind, index, epoch)`.
    pub leases: Vec<(String, String, u64)>,
    /// Takeovers by this instance so far, `(kind, count)`.
    pub takeovers: Vec<(String, u64)>,
    /// Leases this instance lost so far, `(kind, count)`.
    pub lost: Vec<(String, u64)>,
    /// Activations of other instances this one picked up.
    pub pickups: u64,
    /// Jobs of dead instances this one marked interrupted.
    pub reaped: u64,
    /// What each live instance serves, `(instance, index, generation)`, as of the last
    /// heartbeat.
    pub serving: Vec<(String, String, u64)>,
}

/// Labels of the fleet's serving generations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServingLabels {
    /// The instance.
    pub instance: String,
    /// The index.
    pub index: String,
}

/// The state the gauges are set from.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The fleet.
    pub fleet: FleetSnapshot,
    /// Every index.
    pub indexes: Vec<IndexSnapshot>,
    /// Jobs by state (`queued`, `running`, ...).
    pub jobs: Vec<(&'static str, u64)>,
    /// Heavy work admitted now.
    pub queue_admitted: u64,
    /// Its limit.
    pub queue_capacity: u64,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// How an autotune can end.
pub const AUTOTUNE_OUTCOMES: [&str; 5] = ["promoted", "kept", "no_winner", "cancelled", "failed"];

/// What an agent can decide.
pub const AGENT_ACTIONS: [&str; 4] = ["promoted", "kept", "activated", "rolled_back"];

/// Every metric vectune exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RequestLabels, Histogram>,
    trials: Counter,
    builds: Family<BuildLabels, Counter>,
    build_seconds: Family<BuildLabels, Histogram>,
    autotunes: Family<OutcomeLabels, Counter>,
    decisions: Family<ActionLabels, Counter>,
    refused: Counter,
    vectors: Family<IndexLabels, Gauge>,
    generation: Family<IndexLabels, Gauge>,
    live_recall: Family<IndexLabels, FloatGauge>,
    jobs: Family<StateLabels, Gauge>,
    queue_admitted: Gauge,
    queue_capacity: Gauge,
    instance: Family<InstanceLabels, Gauge>,
    fleet_instances: Gauge,
    lease_epoch: Family<LeaseLabels, Gauge>,
    takeovers: Family<KindLabels, Counter>,
    lost: Family<KindLabels, Counter>,
    pickups: Counter,
    fleet_building: Gauge,
    reaped: Counter,
    fleet_generation: Family<ServingLabels, Gauge>,
    /// Serialises scrapes: the fleet's counters are counted by the fleet and carried
    /// over here by their increase since the last scrape.
    scrape: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~105 s: searches at the bottom, sync autotunes at the top
    Histogram::new(exponential_buckets(0.00005, 2.0, 22))
}

fn build_histogram() -> Histogram {
    // 10 ms .. ~40 min
    Histogram::new(exponential_buckets(0.01, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered (and empty).
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            trials: Counter::default(),
            builds: Family::default(),
            build_seconds: Family::new_with_constructor(build_histogram),
            autotunes: Family::default(),
            decisions: Family::default(),
            refused: Counter::default(),
            vectors: Family::default(),
            generation: Family::default(),
            live_recall: Family::default(),
            jobs: Family::default(),
            queue_admitted: Gauge::default(),
            queue_capacity: Gauge::default(),
            instance: Family::default(),
            fleet_instances: Gauge::default(),
            lease_epoch: Family::default(),
            takeovers: Family::default(),
            lost: Family::default(),
            pickups: Counter::default(),
            fleet_building: Gauge::default(),
            reaped: Counter::default(),
            fleet_generation: Family::default(),
            scrape: std::sync::Mutex::new(()),
            registry: Registry::default(),
        };
        r.register(
            "vectune_instance",
            "This instance (1), labelled with its id and host",
            m.instance.clone(),
        );
        r.register(
            "vectune_fleet_instances",
            "Live instances on the store, this one included (as of the last heartbeat)",
            m.fleet_instances.clone(),
        );
        r.register(
            "vectune_lease_epoch",
            "Epoch (fencing token) of each lease this instance holds, by kind and index",
            m.lease_epoch.clone(),
        );
        r.register(
            "vectune_lease_takeovers",
            "Leases this instance took over from an expired or dead holder, by kind",
            m.takeovers.clone(),
        );
        r.register(
            "vectune_lease_lost",
            "Leases this instance lost (taken over or expired while held), by kind",
            m.lost.clone(),
        );
        r.register(
            "vectune_fleet_activation_pickups",
            "Activations of other instances this one now serves (stored graph loaded)",
            m.pickups.clone(),
        );
        r.register(
            "vectune_fleet_building",
            "1 while this instance builds a graph another instance's autotune offered",
            m.fleet_building.clone(),
        );
        r.register(
            "vectune_fleet_serving_generation",
            "The generation each live instance on the store serves, by instance and index (from their liveness records)",
            m.fleet_generation.clone(),
        );
        r.register(
            "vectune_fleet_jobs_reaped",
            "Jobs of dead instances this one marked interrupted",
            m.reaped.clone(),
        );
        r.register(
            "vectune_http_requests",
            "HTTP requests answered, by method, route template and status",
            m.requests.clone(),
        );
        r.register(
            "vectune_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status",
            m.request_seconds.clone(),
        );
        r.register("vectune_trials", "Trials journaled", m.trials.clone());
        r.register(
            "vectune_graph_builds",
            "HNSW graphs built (not loaded from the store), by purpose",
            m.builds.clone(),
        );
        r.register(
            "vectune_graph_build_duration_seconds",
            "Wall time of a graph build, by purpose",
            m.build_seconds.clone(),
        );
        r.register(
            "vectune_autotune_runs",
            "Autotune runs ended, by outcome (promoted, kept, no_winner, cancelled, failed)",
            m.autotunes.clone(),
        );
        r.register(
            "vectune_agent_decisions",
            "Background agent decisions, by action",
            m.decisions.clone(),
        );
        r.register(
            "vectune_queue_refused",
            "Heavy work refused because the queue was full (503 overloaded)",
            m.refused.clone(),
        );
        r.register(
            "vectune_index_vectors",
            "Vectors stored per index",
            m.vectors.clone(),
        );
        r.register(
            "vectune_index_active_generation",
            "Serving generation per active index",
            m.generation.clone(),
        );
        r.register(
            "vectune_index_live_recall_ratio",
            "Live recall@k of the serving generation (sampled searches re-run exactly)",
            m.live_recall.clone(),
        );
        r.register(
            "vectune_jobs",
            "Jobs known to this instance, by state",
            m.jobs.clone(),
        );
        r.register(
            "vectune_queue_admitted",
            "Heavy work (builds, trials, ground truth, autotunes, activations) admitted now",
            m.queue_admitted.clone(),
        );
        r.register(
            "vectune_queue_capacity",
            "Heavy work admitted at once at most (limits.max_queued_jobs)",
            m.queue_capacity.clone(),
        );
        // every known label value starts at 0, so a rate over the first event is right
        // and a dashboard sees the series before anything happened
        for outcome in AUTOTUNE_OUTCOMES {
            drop(m.autotune_series(outcome));
        }
        for action in AGENT_ACTIONS {
            drop(m.decisions.get_or_create(&ActionLabels {
                action: action.to_string(),
            }));
        }
        for purpose in [BuildPurpose::trial, BuildPurpose::activation] {
            drop(m.builds.get_or_create(&BuildLabels { purpose }));
        }
        for kind in ["autotune", "agent"] {
            let labels = KindLabels { kind: kind.into() };
            drop(m.takeovers.get_or_create(&labels));
            drop(m.lost.get_or_create(&labels));
        }
        Metrics { registry: r, ..m }
    }

    fn autotune_series(&self, outcome: &str) -> impl std::ops::Deref<Target = Counter> + '_ {
        self.autotunes.get_or_create(&OutcomeLabels {
            outcome: outcome.to_string(),
        })
    }

    /// One answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
            status: status.to_string(),
        };
        self.request_seconds.get_or_create(&labels).observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// One trial journaled.
    pub fn trial(&self) {
        self.trials.inc();
    }

    /// One graph built for `purpose` in `seconds`.
    pub fn build(&self, purpose: BuildPurpose, seconds: f64) {
        let labels = BuildLabels { purpose };
        self.builds.get_or_create(&labels).inc();
        self.build_seconds.get_or_create(&labels).observe(seconds);
    }

    /// Whether this instance builds a graph for another instance's autotune now.
    pub fn fleet_building(&self, on: bool) {
        self.fleet_building.set(i64::from(on));
    }

    /// One autotune ended with `outcome`.
    pub fn autotune(&self, outcome: &str) {
        self.autotune_series(outcome).inc();
    }

    /// One agent decision.
    pub fn decision(&self, action: &str) {
        self.decisions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .inc();
    }

    /// One refusal of heavy work.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// The exposition (OpenMetrics text, which Prometheus scrapes), gauges set from `now`.
    pub fn render(&self, now: &Snapshot) -> String {
        let _one_scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.render_fleet(&now.fleet);
        // an index deleted since the last scrape must lose its series
        self.vectors.clear();
        self.generation.clear();
        self.live_recall.clear();
        for ix in &now.indexes {
            let labels = IndexLabels {
                index: ix.name.clone(),
            };
            self.vectors
                .get_or_create(&labels)
                .set(i64::try_from(ix.vectors).unwrap_or(i64::MAX));
            if let Some(g) = ix.generation {
                self.generation
                    .get_or_create(&labels)
                    .set(i64::try_from(g).unwrap_or(i64::MAX));
            }
            if let Some(r) = ix.live_recall {
                self.live_recall.get_or_create(&labels).set(r);
            }
        }
        self.jobs.clear();
        for (state, n) in &now.jobs {
            self.jobs
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.queue_admitted
            .set(i64::try_from(now.queue_admitted).unwrap_or(i64::MAX));
        self.queue_capacity
            .set(i64::try_from(now.queue_capacity).unwrap_or(i64::MAX));
        let mut out = String::new();
        // writing into a String cannot fail
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Raises `c` to `to` (counts kept elsewhere; they only grow).
fn catch_up(c: &Counter, to: u64) {
    let now = c.get();
    if to > now {
        c.inc_by(to - now);
    }
}

impl Metrics {
    fn render_fleet(&self, f: &FleetSnapshot) {
        self.instance.clear();
        if !f.instance.is_empty() {
            self.instance
                .get_or_create(&InstanceLabels {
                    instance: f.instance.clone(),
                    host: f.host.clone(),
                })
                .set(1);
        }
        self.fleet_instances
            .set(i64::try_from(f.instances).unwrap_or(i64::MAX));
        // a lease given back since the last scrape must lose its series
        self.lease_epoch.clear();
        for (kind, index, epoch) in &f.leases {
            self.lease_epoch
                .get_or_create(&LeaseLabels {
                    kind: kind.clone(),
                    index: index.clone(),
                })
                .set(i64::try_from(*epoch).unwrap_or(i64::MAX));
        }
        for (kind, n) in &f.takeovers {
            catch_up(
                &self.takeovers.get_or_create(&KindLabels { kind: kind.clone() }),
                *n,
            );
        }
        for (kind, n) in &f.lost {
            catch_up(&self.lost.get_or_create(&KindLabels { kind: kind.clone() }), *n);
        }
        catch_up(&self.pickups, f.pickups);
        catch_up(&self.reaped, f.reaped);
        self.fleet_generation.clear();
        for (instance, index, generation) in &f.serving {
            self.fleet_generation
                .get_or_create(&ServingLabels {
                    instance: instance.clone(),
                    index: index.clone(),
                })
                .set(i64::try_from(*generation).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family_with_units_and_labels() {
        let m = Metrics::new();
        m.request("GET", "/vectors/indexes/{index}", 404, 0.0002);
        m.request("GET", "/vectors/indexes/{index}", 404, 0.0003);
        m.trial();
        m.build(BuildPurpose::activation, 1.5);
        m.autotune("promoted");
        m.decision("rolled_back");
        let text = m.render(&Snapshot {
            indexes: vec![IndexSnapshot {
                name: "docs".into(),
                vectors: 1234,
                generation: Some(3),
                live_recall: Some(0.97),
            }],
            jobs: vec![("running", 1)],
            queue_admitted: 1,
            queue_capacity: 16,
            fleet: FleetSnapshot {
                instance: "0190".into(),
                host: "h".into(),
                instances: 2,
                leases: vec![("autotune".into(), "docs".into(), 7)],
                takeovers: vec![("agent".into(), 1)],
                lost: vec![],
                pickups: 3,
                reaped: 0,
                serving: vec![("0190".into(), "docs".into(), 3)],
            },
        });
        for want in [
            r#"vectune_http_requests_total{method="GET",route="/vectors/indexes/{index}",status="404"} 2"#,
            "# TYPE vectune_http_request_duration_seconds histogram",
            "vectune_trials_total 1",
            r#"vectune_graph_builds_total{purpose="activation"} 1"#,
            r#"vectune_autotune_runs_total{outcome="promoted"} 1"#,
            r#"vectune_agent_decisions_total{action="rolled_back"} 1"#,
            r#"vectune_index_vectors{index="docs"} 1234"#,
            r#"vectune_index_active_generation{index="docs"} 3"#,
            r#"vectune_index_live_recall_ratio{index="docs"} 0.97"#,
            r#"vectune_jobs{state="running"} 1"#,
            "vectune_queue_capacity 16",
            r#"vectune_instance{instance="0190",host="h"} 1"#,
            "vectune_fleet_instances 2",
            r#"vectune_lease_epoch{kind="autotune",index="docs"} 7"#,
            r#"vectune_lease_takeovers_total{kind="agent"} 1"#,
            r#"vectune_lease_takeovers_total{kind="autotune"} 0"#,
            "vectune_fleet_activation_pickups_total 3",
            r#"vectune_fleet_serving_generation{instance="0190",index="docs"} 3"#,
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn a_deleted_index_loses_its_series() {
        let m = Metrics::new();
        let ix = |name: &str| IndexSnapshot {
            name: name.into(),
            vectors: 1,
            generation: None,
            live_recall: None,
        };
        let before = m.render(&Snapshot {
            indexes: vec![ix("a"), ix("b")],
            ..Snapshot::default()
        });
        assert!(before.contains(r#"index="b""#));
        let after = m.render(&Snapshot {
            indexes: vec![ix("a")],
            ..Snapshot::default()
        });
        assert!(!after.contains(r#"index="b""#), "{after}");
        assert!(after.contains(r#"vectune_index_vectors{index="a"} 1"#));
    }
}
