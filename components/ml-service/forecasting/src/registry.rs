//! The model registry: every version shipped in the component, each with its
//! walk-forward snapshots, and the cache of loaded models.
//!
//! A version (`v1`, `v2`) is one ensemble recipe. Its snapshots are the same
//! recipe fit on the rows before successive years (the walk-forward folds) and
//! on all rows (`model.onnx`). A forecast for a date uses the newest snapshot
//! whose training ended before that date, so a replay of 2008 is served by the
//! model that existed in 2008 — never one fit on 2008's future — and live dates
//! get the full model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::model::Model;

/// One ONNX file of a version, as training wrote it into `metadata.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// First date this snapshot serves.
    pub serves_from: NaiveDate,
    /// Path below the version's directory.
    pub file: String,
    pub training_window: [NaiveDate; 2],
    pub training_rows: u64,
    pub sha256: String,
    pub bytes: usize,
}

/// What the registry reads from a version's `metadata.json`; the whole file is
/// served as is by `GET /models`.
#[derive(Debug, Deserialize)]
struct Head {
    version: String,
    members: Vec<String>,
    features: Vec<String>,
    snapshots: Vec<Snapshot>,
}

/// A model version: its metadata, feature order, members and snapshots.
#[derive(Debug)]
pub struct ModelVersion {
    pub name: String,
    pub features: Vec<String>,
    pub members: Vec<String>,
    /// Oldest first.
    pub snapshots: Vec<Snapshot>,
    pub metadata: serde_json::Value,
    files: HashMap<String, &'static [u8]>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown model version `{0}` (known: {1})")]
    UnknownVersion(String, String),
    #[error(
        "model version {version} has no snapshot trained before {date}; the first serves from {first}"
    )]
    NoModelForDate {
        version: String,
        date: NaiveDate,
        first: NaiveDate,
    },
    #[error("the embedded models are inconsistent: {0}")]
    Corrupt(String),
}

impl RegistryError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownVersion(..) => "unknown-model-version",
            Self::NoModelForDate { .. } => "no-model-for-date",
            Self::Corrupt(_) => "model-unavailable",
        }
    }
}

/// A version's files as compiled into the component.
struct Embedded {
    name: &'static str,
    metadata: &'static str,
    files: &'static [(&'static str, &'static [u8])],
}

macro_rules! embed {
    ($name:literal, walk_forward: [$($year:literal),* $(,)?]) => {
        Embedded {
            name: $name,
            metadata: include_str!(concat!("../../models/", $name, "/metadata.json")),
            files: &[
                ("model.onnx", include_bytes!(concat!("../../models/", $name, "/model.onnx"))),
                $((
                    concat!("walk-forward/", $year, ".onnx"),
                    include_bytes!(concat!("../../models/", $name, "/walk-forward/", $year, ".onnx")),
                ),)*
            ],
        }
    };
}

static EMBEDDED: &[Embedded] = &[
    embed!("v1", walk_forward: [2005, 2006, 2007, 2008, 2009, 2010, 2011, 2012, 2013]),
    embed!("v2", walk_forward: [2005, 2006, 2007, 2008, 2009, 2010, 2011, 2012, 2013]),
];

/// Every shipped model version.
#[derive(Debug)]
pub struct Registry {
    versions: Vec<ModelVersion>,
}

impl Registry {
    /// The versions compiled into this build, parsed once per instance.
    pub fn embedded() -> Result<&'static Self, RegistryError> {
        static REGISTRY: OnceLock<Result<Registry, String>> = OnceLock::new();
        REGISTRY
            .get_or_init(|| Self::parse(EMBEDDED).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| RegistryError::Corrupt(e.clone()))
    }

    fn parse(embedded: &[Embedded]) -> Result<Self, RegistryError> {
        let versions = embedded
            .iter()
            .map(|e| {
                let corrupt = |what: String| RegistryError::Corrupt(format!("{}: {what}", e.name));
                let metadata: serde_json::Value =
                    serde_json::from_str(e.metadata).map_err(|err| corrupt(err.to_string()))?;
                let head = Head::deserialize(&metadata).map_err(|err| corrupt(err.to_string()))?;
                if head.version != e.name {
                    return Err(corrupt(format!("metadata names version {}", head.version)));
                }
                let files: HashMap<String, &'static [u8]> =
                    e.files.iter().map(|(n, b)| (n.to_string(), *b)).collect();
                let mut snapshots = head.snapshots;
                snapshots.sort_by_key(|s| s.serves_from);
                if snapshots.is_empty() {
                    return Err(corrupt("no snapshots".into()));
                }
                for s in &snapshots {
                    match files.get(&s.file) {
                        Some(bytes) if bytes.len() == s.bytes => {}
                        Some(_) => return Err(corrupt(format!("{} has the wrong size", s.file))),
                        None => return Err(corrupt(format!("{} is not embedded", s.file))),
                    }
                }
                Ok(ModelVersion {
                    name: head.version,
                    features: head.features,
                    members: head.members,
                    snapshots,
                    metadata,
                    files,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { versions })
    }

    pub fn versions(&self) -> &[ModelVersion] {
        &self.versions
    }

    pub fn version(&self, name: &str) -> Result<&ModelVersion, RegistryError> {
        self.versions
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.versions.iter().map(|v| v.name.as_str()).collect();
                RegistryError::UnknownVersion(name.to_string(), known.join(", "))
            })
    }
}

/// A loaded snapshot, and how long loading took if this call loaded it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub model: Arc<Model>,
    pub snapshot: Snapshot,
    /// `None` when the model came from this instance's cache.
    pub load_time: Option<Duration>,
}

impl ModelVersion {
    /// The snapshot serving `date` (the newest one by default).
    pub fn snapshot_for(&self, date: Option<NaiveDate>) -> Result<&Snapshot, RegistryError> {
        let newest = self.snapshots.last();
        let found = match date {
            None => newest,
            Some(date) => self.snapshots.iter().rev().find(|s| s.serves_from <= date),
        };
        found.ok_or_else(|| RegistryError::NoModelForDate {
            version: self.name.clone(),
            date: date.unwrap_or_default(),
            first: self.snapshots[0].serves_from,
        })
    }

    /// The snapshot for `date`, loaded: parsed and optimised on first use, then
    /// kept for the life of the instance (one request under Spin's default,
    /// many when the host reuses instances).
    pub fn load(&self, date: Option<NaiveDate>) -> Result<Loaded, crate::Error> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<Model>>>> = OnceLock::new();
        let snapshot = self.snapshot_for(date)?.clone();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(model) = cache
            .lock()
            .ok()
            .and_then(|c| c.get(&snapshot.sha256).cloned())
        {
            return Ok(Loaded {
                model,
                snapshot,
                load_time: None,
            });
        }
        let bytes = self
            .files
            .get(&snapshot.file)
            .ok_or_else(|| RegistryError::Corrupt(format!("{} is not embedded", snapshot.file)))?;
        let started = Instant::now();
        let model = Arc::new(Model::load(
            &snapshot.file,
            bytes,
            self.features.len(),
            &self.members,
        )?);
        let load_time = Some(started.elapsed());
        if let Ok(mut cache) = cache.lock() {
            cache.insert(snapshot.sha256.clone(), model.clone());
        }
        Ok(Loaded {
            model,
            snapshot,
            load_time,
        })
    }

    /// The ONNX bytes of a snapshot (for checks and benchmarks).
    pub fn file(&self, snapshot: &Snapshot) -> Option<&'static [u8]> {
        self.files.get(&snapshot.file).copied()
    }
}
