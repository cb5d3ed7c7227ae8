//! Indexes, vectors, harnesses, the journal and the registry: the service's data
//! operations, each checking that its index exists before it touches anything.

use super::*;

impl Vectune {
    /// Creates an index.
    pub async fn create_index(&self, name: IndexName, dims: Dims, metric: Metric) -> Result<IndexView> {
        let index = self.inner.indexes.create(name, dims, metric).await?;
        Ok(self.view(&index))
    }

    /// Every index, by name.
    pub fn list_indexes(&self) -> Vec<IndexView> {
        self.inner.indexes.list().iter().map(|i| self.view(i)).collect()
    }

    /// One index.
    pub fn get_index(&self, name: &IndexName) -> Result<IndexView> {
        let index = self.inner.indexes.get(name)?;
        Ok(self.view(&index))
    }

    /// Deletes an index, its harnesses and its serving graph.
    pub async fn delete_index(&self, name: &IndexName) -> Result<()> {
        self.inner.indexes.get(name)?;
        // stop what would write under the index first
        self.inner.agents.forget(name);
        self.inner.jobs.forget(name);
        self.inner.harnesses.delete_for_index(name).await?;
        self.inner.indexes.delete(name).await?;
        self.inner.serving.remove(name);
        self.inner.journal.forget(name);
        self.inner.monitor.forget(name);
        self.inner.refresh.forget(name);
        Ok(())
    }

    /// Appends a batch, whole or not at all. Returns `(appended, total)`.
    pub async fn append(&self, name: &IndexName, vectors: Vec<NewVector>) -> Result<(usize, u64)> {
        let index = self.inner.indexes.get(name)?;
        let batch = Batch::parse(index.meta(), vectors)?;
        let out = self.inner.indexes.append(&index, batch).await?;
        self.after_write(name);
        Ok(out)
    }

    /// The parser of a binary append (fvecs or npy) to `name`: the index and the format are
    /// checked before a byte of the body is read. `expected_len` (the body's declared
    /// length) sizes the rows once.
    pub fn binary_parser(
        &self,
        name: &IndexName,
        format: &str,
        expected_len: Option<u64>,
    ) -> Result<binary::Parser> {
        let index = self.inner.indexes.get(name)?;
        let format = BinaryFormat::parse(format)
            .ok_or_else(|| VectorsError::InvalidFormat(format.chars().take(32).collect()))?;
        Ok(binary::Parser::new(format, index.meta().dims.get(), expected_len))
    }

    /// Appends the rows of a binary body fed whole to `parser`, ids assigned from the
    /// index's total. Returns `(appended, total, first_id, last_id)`.
    pub async fn append_parsed(
        &self,
        name: &IndexName,
        parser: binary::Parser,
    ) -> Result<(usize, u64, String, String)> {
        let index = self.inner.indexes.get(name)?;
        let data = parser.finish().map_err(VectorsError::from)?;
        let out = self.inner.indexes.append_rows(&index, data).await?;
        self.after_write(name);
        Ok(out)
    }

    /// Creates a harness from explicit queries.
    pub async fn create_harness(
        &self,
        name: HarnessName,
        index: &IndexName,
        k: i64,
        queries: Vec<NewQuery>,
    ) -> Result<HarnessView> {
        let index = self.inner.indexes.get(index)?;
        let _ticket = self.admit()?;
        Ok(self
            .inner
            .harnesses
            .create_explicit(&self.inner.indexes, name, &index, k, queries)
            .await?)
    }

    /// Creates a harness by sampling stored vectors.
    pub async fn autogen_harness(
        &self,
        name: HarnessName,
        index: &IndexName,
        queries: i64,
        k: i64,
        seed: u64,
    ) -> Result<HarnessView> {
        let index = self.inner.indexes.get(index)?;
        let _ticket = self.admit()?;
        Ok(self
            .inner
            .harnesses
            .create_autogen(&self.inner.indexes, name, &index, queries, k, seed)
            .await?)
    }

    /// A harness; its ground truth is included when it matches the index's vectors.
    pub async fn get_harness(&self, name: &HarnessName) -> Result<HarnessView> {
        let indexes = &self.inner.indexes;
        Ok(self
            .inner
            .harnesses
            .get(name, |i| indexes.get(i).ok().map(|i| i.total()))
            .await?)
    }

    /// The journal of an index, oldest first, optionally of one harness.
    pub async fn list_trials(
        &self,
        index: &IndexName,
        harness: Option<&HarnessName>,
    ) -> Result<Vec<Arc<Trial>>> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.journal.list(index, harness).await?)
    }

    /// The journal's trials not dominated on `axes` (default recall ↑, p50 ↓), optionally
    /// of one harness.
    pub async fn pareto(
        &self,
        index: &IndexName,
        harness: Option<&HarnessName>,
        axes: &[trials::Axis],
    ) -> Result<Vec<Arc<Trial>>> {
        self.inner.indexes.get(index)?;
        if let Some(h) = harness {
            self.inner.harnesses.check_index(h, index).await?;
        }
        let journal = self.inner.journal.list(index, harness).await?;
        Ok(trials::pareto_on(&journal, axes))
    }

    /// One trial.
    pub async fn get_trial(&self, index: &IndexName, id: &str) -> Result<Arc<Trial>> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.journal.get(index, id).await?)
    }

    /// The promotion registry of an index.
    pub async fn promoted(&self, index: &IndexName) -> Result<PromotedState> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.registry.get(index).await?)
    }

    /// Promotes a journal trial's config. Does not rebuild: the next activation uses it.
    pub async fn promote(
        &self,
        index: &IndexName,
        trial_id: &str,
        by: Option<String>,
        note: Option<String>,
    ) -> Result<PromotedState> {
        self.inner.indexes.get(index)?;
        let trial = self.inner.journal.get(index, trial_id).await?;
        let state = self
            .inner
            .registry
            .promote(index, trial.config, trial.id, by, note)
            .await?;
        tracing::info!(index = %index, trial = %trial.id, config = ?trial.config, "promoted");
        Ok(state)
    }

    /// Rolls the promotion registry back one step.
    pub async fn rollback(&self, index: &IndexName) -> Result<PromotedState> {
        self.inner.indexes.get(index)?;
        Ok(self.inner.registry.rollback(index).await?)
    }
}
