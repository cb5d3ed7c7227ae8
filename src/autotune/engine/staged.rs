//! A run over a large index: graph parameters explored on a uniform sample by the same
//! climb and refinement as any adaptive run (a run of its own over the backend's sample
//! scope, its trials kept out of the journal: they measure the sample, not the index), then
//! the leading graphs built on the full index, where [`Transfer`] finds the least
//! `ef_search` that passes and the usual steps (held-out check, near-ties, promotion)
//! judge the full index's trials only. See [`crate::autotune::transfer`] for why.

use tokio::time::Instant;

use super::{Backend, Phase, Run, Setup, Step};
use crate::autotune::adaptive::Ladders;
use crate::autotune::forecast::{self, BuildForecast};
use crate::autotune::refine::RefineStats;
use crate::autotune::spec::Sampling;
use crate::autotune::transfer::{self, SampleReport, Transfer, TransferError};
use crate::autotune::{Spec, Strategy};
use crate::params::HnswConfig;

/// What the sample's exploration left for the rest of the run.
pub(super) struct Sampled {
    report: SampleReport,
    /// The first leading config's recall on the sample.
    first_recall: Option<f64>,
    /// The sample's builds: the full builds' forecast until one is measured.
    forecast: BuildForecast,
    /// How much longer a full build takes than the sample's ([`forecast::size_scale`],
    /// [`forecast::builder_scale`]).
    full_scale: f64,
    refinement: Option<RefineStats>,
}

impl Sampled {
    /// Seconds a full build of `c`'s graph is forecast to take from the sample's builds.
    fn full_build_secs(&self, c: &HnswConfig) -> f64 {
        self.forecast.secs(c.m, c.ef_construction) * self.full_scale
    }
}

impl<B: Backend> Run<'_, B> {
    /// Explores on a sample when the index is large enough (or the request asks) and sets
    /// the run up to transfer the leading graphs; `None` when cancelled.
    pub(super) async fn explore_sample(&mut self) -> Step<(), B::Error> {
        let Strategy::Adaptive { max_trials, budget } = self.spec.strategy else {
            return Ok(Some(()));
        };
        let of_rows = self.b.rows();
        let Some(rows) = self.spec.samples(of_rows) else {
            return Ok(Some(()));
        };
        let started = Instant::now();
        // the backend says which builder the sample's graphs get (on codes: they only rank
        // configs, [`transfer::sample_engine`]): the ids and forecasts below follow it
        let Some(sample_engine) = self.b.scope(Some(rows)).await? else {
            return Ok(None);
        };
        // the sample misses less: its bar is stricter, so its graphs have headroom
        let mut rules = self.spec.rules;
        rules.target_recall = transfer::sample_bar(rules.target_recall);
        rules.min_recall = transfer::sample_bar(rules.min_recall);
        let spec = Spec {
            rules,
            strategy: Strategy::Adaptive {
                max_trials,
                budget: budget.mul_f64(transfer::SAMPLE_BUDGET_SHARE),
            },
            validation_fraction: 0.0,
            ..self.spec.clone()
        };
        // a full build against the sample's: more rows, and the index's builder
        let full_scale =
            forecast::size_scale(rows, of_rows) * forecast::builder_scale(sample_engine, self.setup.engine);
        let setup = Setup {
            // never journaled: the pending trials are dropped with the sample's run
            defer: true,
            engine: sample_engine,
            ..self.setup.clone()
        };
        let (leading, trials, first_recall, forecast, refinement) = {
            let mut r = Run::new(&mut *self.b, &spec, setup);
            r.started = self.started;
            let kept =
                budget.as_secs_f64() * (1.0 - transfer::SAMPLE_BUDGET_SHARE) * transfer::FULL_BUILD_SHARE;
            r.full = Some((full_scale, kept));
            if r.explore().await? {
                return Ok(None);
            }
            let leading = transfer::leading(
                &r.candidates,
                &|c| r.can_win(c),
                r.climb_quantization,
                r.setup.engine,
            );
            let first = leading
                .first()
                .and_then(|f| r.candidates.iter().find(|c| c.config == *f))
                .map(|c| c.recall_at_k);
            let refinement = r.refines().then_some(r.refine);
            (leading, r.candidates.len(), first, r.forecast, refinement)
        };
        let builds = self.b.builds();
        if self.b.scope(None).await?.is_none() {
            return Ok(None);
        }
        // the leading graphs' full builds: the second may be built elsewhere meanwhile
        self.b.prefetch(&leading).await?;
        tracing::info!(rows, of_rows, trials, builds, leading = ?leading, "autotune: sample explored");
        self.sampled = Some(Sampled {
            report: SampleReport {
                rows,
                of_rows,
                chosen_by: match self.spec.sample {
                    Sampling::Rows(_) => "request",
                    _ => "auto",
                }
                .into(),
                trials,
                builds,
                engine: sample_engine,
                full_builds: 0,
                leading: Vec::new(),
                transfer: None,
                secs: started.elapsed().as_secs_f64(),
                full_build_forecast_secs: None,
                full_build_secs: None,
            },
            first_recall,
            forecast,
            full_scale,
            refinement,
        });
        let ladder = Ladders::within(&self.spec.bounds).ef;
        let bounds = self.spec.bounds;
        // the first graph that passes on the full index is measured in every quantization
        let twins = crate::params::Quantization::ALL.to_vec();
        self.phase = Phase::Transfer(Box::new(Transfer::new(
            leading,
            twins,
            ladder,
            bounds,
            self.setup.engine,
        )));
        Ok(Some(()))
    }

    /// The next probe of the transfer, `None` when it is done or the budget is spent.
    pub(super) fn next_transfer(&mut self, left: f64) -> Option<HnswConfig> {
        let cap = match self.spec.strategy {
            Strategy::Adaptive { max_trials, .. } => max_trials,
            Strategy::Grid => usize::MAX,
        };
        // the budget and max_trials (the full index's trials: the sample had as many of its
        // own) end the probes, but never before the full index measured one
        let spent = left <= 0.0 || self.candidates.len() >= cap;
        if spent && !self.candidates.is_empty() {
            return None;
        }
        // a full build measured is the forecast from then on
        let sampled = self.sampled.as_ref().filter(|_| self.forecast.is_empty());
        let forecast = &self.forecast;
        let secs = |c: &HnswConfig| match sampled {
            Some(s) => s.full_build_secs(c),
            None => forecast.secs(c.m, c.ef_construction),
        };
        let Phase::Transfer(t) = &mut self.phase else {
            return None;
        };
        let next = t.next(&|c| secs(c) <= left)?;
        // the report lists each graph transferred, at the ef_search it started from
        if let Some(s) = self.sampled.as_mut() {
            let engine = self.setup.engine;
            if !s
                .report
                .leading
                .iter()
                .any(|l| l.links_id(engine) == next.links_id(engine))
            {
                s.report.leading.push(next);
            }
        }
        Some(next)
    }

    /// Trials counted before this run's own (a sampled run's progress goes on from the
    /// sample's trials).
    pub(super) fn progress_base(&self) -> usize {
        self.sampled.as_ref().map_or(0, |s| s.report.trials)
    }

    /// Refinement's share: on the sample when the run sampled.
    pub(super) fn refinement(&self) -> Option<RefineStats> {
        match &self.sampled {
            Some(s) => s.refinement,
            None => self.refines().then_some(self.refine),
        }
    }

    /// The sample's report with the full index's part filled in: its builds, and the first
    /// leading config's recall there beside its recall on the sample.
    pub(super) fn sample_report(&self) -> Option<SampleReport> {
        let s = self.sampled.as_ref()?;
        let mut r = s.report.clone();
        r.full_builds = self.b.builds().saturating_sub(r.builds);
        if let Some(g) = r.leading.first() {
            r.full_build_forecast_secs = Some(s.full_build_secs(g));
            r.full_build_secs = self
                .candidates
                .iter()
                .find(|c| c.config.graph_id(self.setup.engine) == g.graph_id(self.setup.engine))
                .map(|c| c.build_time_secs);
        }
        r.transfer = match (r.leading.first(), s.first_recall) {
            (Some(&config), Some(sample_recall)) => {
                self.candidates
                    .iter()
                    .find(|c| c.config == config)
                    .map(|c| TransferError {
                        config,
                        sample_recall,
                        full_recall: c.recall_at_k,
                    })
            }
            _ => None,
        };
        Some(r)
    }
}
