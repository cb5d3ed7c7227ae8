//! One autotune per index in this process: a claim held for the whole run, freed when
//! dropped (the fleet's lease extends the rule to other instances).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::{AutotuneError, Result};
use crate::names::IndexName;

/// The indexes with an autotune running in this process.
#[derive(Debug, Default)]
pub struct Running {
    set: Mutex<HashSet<IndexName>>,
}

/// Held while an autotune runs; dropping it frees the index.
#[derive(Debug)]
pub struct RunGuard {
    running: Arc<Running>,
    index: IndexName,
}

impl Running {
    /// Whether an autotune of `index` is under way.
    pub fn is_claimed(&self, index: &IndexName) -> bool {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).contains(index)
    }

    /// Claims `index`, or `Running` if an autotune of it is under way.
    pub fn claim(self: &Arc<Self>, index: &IndexName) -> Result<RunGuard> {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(index.clone()) {
            return Err(AutotuneError::Running(index.clone()));
        }
        Ok(RunGuard {
            running: self.clone(),
            index: index.clone(),
        })
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut set = self.running.set.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_run_per_index() {
        let r = Arc::new(Running::default());
        let a = IndexName::parse("a").unwrap();
        let g = r.claim(&a).unwrap();
        assert!(matches!(r.claim(&a), Err(AutotuneError::Running(_))));
        assert!(r.claim(&IndexName::parse("b").unwrap()).is_ok());
        drop(g);
        assert!(r.claim(&a).is_ok());
    }
}
