//! Direction forecasts from an ONNX ensemble, the model registry and accuracy monitoring on realised outcomes.
//!
//! The domain library of `ml-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `ml-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.
//!
//! - [`model`]: an exported ensemble run by tract (`tract-onnx`), in batches.
//! - [`registry`]: the versions compiled in, their walk-forward snapshots, the
//!   instance's model cache.
//! - [`policy`]: probability → direction, action and confidence.
//! - [`monitor`]: the prediction journal, outcome scoring, latency histogram.

pub mod model;
pub mod monitor;
pub mod policy;
pub mod registry;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use daytrade_contract::ServiceId;

pub use model::{Forecast, MemberVote, Model, ModelError};
pub use policy::{Action, Direction, Policy, Signal};
pub use registry::{ModelVersion, Registry, RegistryError, Snapshot};

/// This service.
pub const SERVICE: ServiceId = ServiceId::ML;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[ServiceId::DATA];

/// Most rows one batch may hold.
pub const MAX_BATCH: usize = 100;

/// Everything that can go wrong between a request and a forecast.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("features {got:?} are not the model's {expected:?}")]
    FeatureMismatch {
        expected: Vec<String>,
        got: Vec<String>,
    },
    #[error("a batch has 1 to {MAX_BATCH} rows, got {0}")]
    BatchSize(usize),
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Registry(e) => e.code(),
            Self::Model(e) => e.code(),
            Self::FeatureMismatch { .. } => "feature-mismatch",
            Self::BatchSize(_) => "batch-too-large",
        }
    }

    /// The HTTP status: 4xx for what the caller can fix.
    pub fn status(&self) -> u16 {
        match self {
            Self::Registry(RegistryError::UnknownVersion(..)) => 404,
            Self::Registry(RegistryError::NoModelForDate { .. }) => 422,
            Self::Model(ModelError::InvalidFeatures { .. }) => 422,
            Self::BatchSize(_) => 400,
            // Names that differ come from data-service, not from the caller.
            Self::FeatureMismatch { .. } => 502,
            Self::Registry(RegistryError::Corrupt(_)) | Self::Model(_) => 500,
        }
    }
}

/// One row to forecast: a symbol's features at a bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub symbol: String,
    /// The bar the features describe; picks the snapshot. `None`: the newest.
    pub date: Option<NaiveDate>,
    /// Feature names when the source gave them, checked against the model's.
    pub names: Option<Vec<String>>,
    pub values: Vec<f64>,
}

/// A row's forecast with the snapshot that made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub row: Row,
    pub forecast: Forecast,
    pub snapshot: Snapshot,
}

/// A batch's forecasts and what producing them cost.
#[derive(Debug, Clone)]
pub struct Batch {
    pub scored: Vec<Scored>,
    /// Graph runs: one per snapshot the rows needed (one for a single date).
    pub runs: usize,
    /// Time in tract's runs.
    pub inference: Duration,
    /// Time spent parsing and optimising models this call (zero when cached).
    pub load: Duration,
}

/// Forecast rows with `version`: rows are grouped by snapshot and each group is
/// one graph run. Every row is validated before any runs.
pub fn forecast(version: &ModelVersion, rows: Vec<Row>) -> Result<Batch, Error> {
    if rows.is_empty() || rows.len() > MAX_BATCH {
        return Err(Error::BatchSize(rows.len()));
    }
    let count = rows.len();
    let mut groups: BTreeMap<NaiveDate, Vec<(usize, Row)>> = BTreeMap::new();
    for (i, row) in rows.into_iter().enumerate() {
        if let Some(names) = &row.names
            && *names != version.features
        {
            return Err(Error::FeatureMismatch {
                expected: version.features.clone(),
                got: names.clone(),
            });
        }
        model::validate(i, &row.values, version.features.len())?;
        let snapshot = version.snapshot_for(row.date)?;
        groups
            .entry(snapshot.serves_from)
            .or_default()
            .push((i, row));
    }
    let mut scored: Vec<Option<Scored>> = vec![None; count];
    let mut batch = Batch {
        scored: Vec::new(),
        runs: 0,
        inference: Duration::ZERO,
        load: Duration::ZERO,
    };
    for rows in groups.into_values() {
        let loaded = version.load(rows[0].1.date)?;
        batch.load += loaded.load_time.unwrap_or_default();
        let values: Vec<Vec<f64>> = rows.iter().map(|(_, r)| r.values.clone()).collect();
        let started = Instant::now();
        let forecasts = loaded.model.predict(&values)?;
        batch.inference += started.elapsed();
        batch.runs += 1;
        for ((i, row), forecast) in rows.into_iter().zip(forecasts) {
            scored[i] = Some(Scored {
                row,
                forecast,
                snapshot: loaded.snapshot.clone(),
            });
        }
    }
    // In the order asked.
    batch.scored = scored.into_iter().flatten().collect();
    Ok(batch)
}
