//! What a grid run measures: the requested grid checked entry by entry (or the default
//! grid), and its configs grouped by the graph they need, so each graph is built once.

use super::{AutotuneError, Result};
use crate::params::{Bounds, Engine, HnswConfig, RawHnswConfig};

/// The seed's default grid, `(ef_construction, ef_search)` at m=16, seed 42.
pub const DEFAULT_GRID: [(u32, u32); 5] = [(20, 30), (40, 30), (80, 30), (80, 60), (160, 30)];

/// The configs a run will measure, and the grid entries it skipped (with why).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Usable configs, in grid order.
    pub configs: Vec<HnswConfig>,
    /// Human-readable reasons, one per skipped entry.
    pub skipped: Vec<String>,
}

/// Checks a requested grid (or takes the default): entries out of `bounds` (the server's)
/// and repeats are skipped and reported; none left is an error.
pub fn plan(grid: Option<&[RawHnswConfig]>, bounds: &Bounds) -> Result<Plan> {
    let Some(grid) = grid else {
        return Ok(Plan {
            configs: DEFAULT_GRID
                .iter()
                .map(|&(ec, es)| HnswConfig {
                    ef_construction: ec,
                    ef_search: es,
                    ..HnswConfig::DEFAULT
                })
                .collect(),
            skipped: Vec::new(),
        });
    };
    collect(
        grid.iter()
            .map(|raw| HnswConfig::parse_within(raw, bounds).map_err(|e| e.to_string())),
    )
}

/// A plan of configs already parsed (an agent's choice): repeats skipped and reported as a
/// requested grid's are; none is an error.
pub fn plan_of(configs: &[HnswConfig]) -> Result<Plan> {
    collect(configs.iter().map(|c| Ok(*c)))
}

/// Keeps each entry's first appearance, reporting the repeats and the unusable ones.
fn collect(entries: impl Iterator<Item = std::result::Result<HnswConfig, String>>) -> Result<Plan> {
    let mut configs: Vec<HnswConfig> = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in entries.enumerate() {
        match entry {
            Ok(c) => match configs.iter().position(|x| *x == c) {
                Some(_) => skipped.push(format!("grid[{i}]: repeats an earlier config")),
                None => configs.push(c),
            },
            Err(e) => skipped.push(format!("grid[{i}]: {e}")),
        }
    }
    if configs.is_empty() {
        return Err(AutotuneError::NoUsableConfig { skipped });
    }
    Ok(Plan { configs, skipped })
}

/// The plan's configs grouped by the graph they need under `engine`
/// ([`HnswConfig::graph_id`]), in order of first appearance: each group is one build,
/// measured at each of its `ef_search` values (in grid order).
pub fn graph_groups(configs: &[HnswConfig], engine: Engine) -> Vec<(HnswConfig, Vec<u32>)> {
    let mut groups: Vec<(HnswConfig, Vec<u32>)> = Vec::new();
    for c in configs {
        match groups
            .iter_mut()
            .find(|(g, _)| g.graph_id(engine) == c.graph_id(engine))
        {
            Some((_, efs)) => efs.push(c.ef_search),
            None => groups.push((*c, vec![c.ef_search])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = plan(None, &Bounds::SEED).unwrap();
        assert_eq!(p.configs.len(), 5);
        assert!(p.configs.iter().all(|c| c.m == 16 && c.seed == 42));
        let raw = |ec: i64, es: i64| RawHnswConfig {
            ef_construction: ec,
            ef_search: es,
            m: None,
            seed: None,
            quantization: None,
            patience: None,
        };
        let p = plan(
            Some(&[raw(1, 30), raw(40, 30), raw(40, 30), raw(40, 500)]),
            &Bounds::SEED,
        )
        .unwrap();
        assert_eq!(p.configs.len(), 1);
        assert_eq!(p.skipped.len(), 3);
        assert!(p.skipped[0].starts_with("grid[0]: ef_construction"));
        // a raised server takes the entry the seed's bounds skip
        let wide = Bounds::raised(400, 800, 64).unwrap();
        let p = plan(Some(&[raw(40, 30), raw(40, 500), raw(40, 801)]), &wide).unwrap();
        assert_eq!(
            p.configs.iter().map(|c| c.ef_search).collect::<Vec<_>>(),
            [30, 500]
        );
        assert_eq!(p.skipped, ["grid[2]: ef_search must be in 10..=800, got 801"]);
        assert!(matches!(
            plan(Some(&[raw(1, 30)]), &Bounds::SEED),
            Err(AutotuneError::NoUsableConfig { .. })
        ));
        assert!(matches!(
            plan(Some(&[]), &Bounds::SEED),
            Err(AutotuneError::NoUsableConfig { .. })
        ));
    }

    #[test]
    fn the_default_grid_needs_four_builds() {
        let groups = graph_groups(&plan(None, &Bounds::SEED).unwrap().configs, Engine::Native);
        assert_eq!(groups.len(), 4);
        let ec80 = groups.iter().find(|(c, _)| c.ef_construction == 80).unwrap();
        assert_eq!(ec80.1, vec![30, 60]);
        let other_seed = HnswConfig {
            seed: 7,
            ..HnswConfig::DEFAULT
        };
        assert_eq!(
            graph_groups(&[HnswConfig::DEFAULT, other_seed], Engine::Native).len(),
            2
        );
    }
}
