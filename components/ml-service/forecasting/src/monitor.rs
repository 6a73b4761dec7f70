//! Accuracy monitoring: predictions are journaled, resolved against what the
//! market did, and scored per model version exactly as training scored them.
//!
//! Keys (in the service's key-value store):
//! `ml/pending/<version>/<date>/<symbol>` and `ml/resolved/<version>/<date>/<symbol>`
//! hold one [`Prediction`] per version, bar and symbol: predicting the same bar
//! twice overwrites, so a retried or repeated request is counted once.
//! `ml/latency/<version>` holds the latency histogram.

use chrono::NaiveDate;
use daytrade_contract::Store;
use serde::{Deserialize, Serialize};

/// A forecast to be checked against the next session's close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub model_version: String,
    /// The snapshot that made it (its `serves_from`).
    pub snapshot: NaiveDate,
    pub symbol: String,
    /// The bar the features were computed on.
    pub date: NaiveDate,
    pub probability_up: f64,
    /// Whether the next session closed above this bar's close; `None` until resolved.
    #[serde(default)]
    pub outcome_up: Option<bool>,
}

const PENDING: &str = "ml/pending/";
const RESOLVED: &str = "ml/resolved/";

fn key(prefix: &str, p: &Prediction) -> String {
    format!("{prefix}{}/{}/{}", p.model_version, p.date, p.symbol)
}

/// The journal of predictions over a key-value store.
#[derive(Debug)]
pub struct Journal<S: Store> {
    pub store: S,
}

impl<S: Store> Journal<S> {
    /// Record a forecast. A bar already resolved for this version keeps its score.
    pub fn record(&self, p: &Prediction) {
        if self.store.get(&key(RESOLVED, p)).is_some() {
            return;
        }
        match serde_json::to_vec(p) {
            Ok(bytes) => self.store.set(&key(PENDING, p), &bytes),
            Err(e) => eprintln!("ml-service: prediction not recorded: {e}"),
        }
    }

    fn read(&self, prefix: &str, version: Option<&str>) -> Vec<Prediction> {
        let scope = match version {
            Some(v) => format!("{prefix}{v}/"),
            None => prefix.to_string(),
        };
        let mut keys: Vec<String> = self
            .store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(&scope))
            .collect();
        // `<version>/<YYYY-MM-DD>/<symbol>`: key order is date order within a version.
        keys.sort();
        keys.iter()
            .filter_map(|k| self.store.get(k))
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect()
    }

    /// Every prediction still waiting for its outcome.
    pub fn pending(&self) -> Vec<Prediction> {
        self.read(PENDING, None)
    }

    /// Store the outcome and move the prediction from pending to resolved.
    pub fn resolve(&self, mut p: Prediction, outcome_up: bool) {
        p.outcome_up = Some(outcome_up);
        match serde_json::to_vec(&p) {
            Ok(bytes) => {
                self.store.set(&key(RESOLVED, &p), &bytes);
                self.store.delete(&key(PENDING, &p));
            }
            Err(e) => eprintln!("ml-service: outcome not recorded: {e}"),
        }
    }

    /// A version's resolved predictions, oldest first; the last `window` if given.
    pub fn resolved(&self, version: &str, window: Option<usize>) -> Vec<Prediction> {
        let mut all = self.read(RESOLVED, Some(version));
        if let Some(window) = window {
            all.drain(..all.len().saturating_sub(window));
        }
        all
    }

    /// Count of pending predictions per version.
    pub fn pending_count(&self, version: &str) -> usize {
        let scope = format!("{PENDING}{version}/");
        self.store
            .keys()
            .iter()
            .filter(|k| k.starts_with(&scope))
            .count()
    }

    pub fn latency(&self, version: &str) -> Histogram {
        self.store
            .get(&format!("ml/latency/{version}"))
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Add one observation to a version's latency histogram (read-modify-write:
    /// concurrent requests may lose an observation, never corrupt the histogram).
    pub fn observe_latency(&self, version: &str, seconds: f64) {
        let mut histogram = self.latency(version);
        histogram.observe(seconds);
        if let Ok(bytes) = serde_json::to_vec(&histogram) {
            self.store.set(&format!("ml/latency/{version}"), &bytes);
        }
    }
}

/// One bin of a calibration table (the same bins as training's).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationBin {
    pub bin: [f64; 2],
    pub n: usize,
    pub mean_predicted: f64,
    pub observed_up: f64,
}

/// How a version did on its resolved predictions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    pub model_version: String,
    pub n: usize,
    pub hits: usize,
    /// Share of predictions whose direction (`p >= 0.5` is up) was right.
    pub hit_rate: Option<f64>,
    /// Area under the ROC curve (ties averaged, as scikit-learn does).
    pub auc: Option<f64>,
    pub brier: Option<f64>,
    /// Share of the rows that went up: the always-up baseline on the same rows.
    pub up_rate: Option<f64>,
    pub calibration: Vec<CalibrationBin>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Score resolved predictions (unresolved ones are ignored).
pub fn accuracy(model_version: &str, predictions: &[Prediction]) -> Accuracy {
    let scored: Vec<(f64, bool)> = predictions
        .iter()
        .filter_map(|p| p.outcome_up.map(|up| (p.probability_up, up)))
        .collect();
    let n = scored.len();
    let hits = scored.iter().filter(|(p, up)| (*p >= 0.5) == *up).count();
    let ups = scored.iter().filter(|(_, up)| *up).count();
    let share = |k: usize| (n > 0).then(|| k as f64 / n as f64);
    let brier = (n > 0).then(|| {
        scored
            .iter()
            .map(|(p, up)| (p - f64::from(u8::from(*up))).powi(2))
            .sum::<f64>()
            / n as f64
    });
    Accuracy {
        model_version: model_version.to_string(),
        n,
        hits,
        hit_rate: share(hits),
        auc: auc(&scored),
        brier,
        up_rate: share(ups),
        calibration: calibration(&scored, 10),
        from: predictions.iter().map(|p| p.date).min(),
        to: predictions.iter().map(|p| p.date).max(),
    }
}

/// Mann-Whitney AUC with average ranks for tied scores; `None` without both classes.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|(_, up)| *up).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<&(f64, bool)> = scored.iter().collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && order[j + 1].0 == order[i].0 {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum += rank * order[i..=j].iter().filter(|(_, up)| *up).count() as f64;
        i = j + 1;
    }
    let (p, q) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

fn calibration(scored: &[(f64, bool)], bins: usize) -> Vec<CalibrationBin> {
    (0..bins)
        .filter_map(|b| {
            let lo = b as f64 / bins as f64;
            let hi = (b + 1) as f64 / bins as f64;
            let members: Vec<&(f64, bool)> = scored
                .iter()
                .filter(|(p, _)| *p >= lo && (*p < hi || (b + 1 == bins && *p <= hi)))
                .collect();
            let n = members.len();
            (n > 0).then(|| CalibrationBin {
                bin: [lo, hi],
                n,
                mean_predicted: members.iter().map(|(p, _)| p).sum::<f64>() / n as f64,
                observed_up: members.iter().filter(|(_, up)| *up).count() as f64 / n as f64,
            })
        })
        .collect()
}

/// Upper bounds (seconds) of the latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram kept in the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Per bucket (not cumulative), then `+Inf`.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        self.counts.resize(LATENCY_BUCKETS.len() + 1, 0);
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// The histogram's lines in the Prometheus text format.
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        use std::fmt::Write;
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default)]
    struct MemStore(RefCell<BTreeMap<String, Vec<u8>>>);

    impl Store for MemStore {
        fn get(&self, key: &str) -> Option<Vec<u8>> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8]) {
            self.0.borrow_mut().insert(key.into(), value.into());
        }
        fn delete(&self, key: &str) {
            self.0.borrow_mut().remove(key);
        }
        fn keys(&self) -> Vec<String> {
            self.0.borrow().keys().cloned().collect()
        }
    }

    fn prediction(symbol: &str, date: &str, p: f64) -> Prediction {
        Prediction {
            model_version: "v1".into(),
            snapshot: "2010-01-01".parse().unwrap(),
            symbol: symbol.into(),
            date: date.parse().unwrap(),
            probability_up: p,
            outcome_up: None,
        }
    }

    #[test]
    fn auc_ranks_ties_as_scikit_learn_does() {
        type Case<'a> = (&'a [(f64, bool)], Option<f64>);
        let cases: [Case; 5] = [
            (
                &[(0.1, false), (0.4, false), (0.35, true), (0.8, true)],
                Some(0.75),
            ),
            (
                &[(0.5, false), (0.5, true), (0.5, false), (0.5, true)],
                Some(0.5),
            ),
            (&[(0.2, false), (0.2, true), (0.8, true)], Some(0.75)),
            (&[(0.9, false), (0.1, true)], Some(0.0)),
            (&[(0.9, true), (0.1, true)], None),
        ];
        for (scored, want) in cases {
            assert_eq!(auc(scored), want, "{scored:?}");
        }
    }

    #[test]
    fn accuracy_scores_direction_brier_and_calibration() {
        let mut ps = vec![
            prediction("A", "2010-01-04", 0.7),
            prediction("A", "2010-01-05", 0.4),
            prediction("B", "2010-01-04", 0.5),
            prediction("B", "2010-01-05", 0.55),
        ];
        for (p, up) in ps.iter_mut().zip([true, true, false, true]) {
            p.outcome_up = Some(up);
        }
        ps.push(prediction("C", "2010-01-06", 0.9)); // unresolved: ignored
        let a = accuracy("v1", &ps);
        assert_eq!(
            (a.n, a.hits),
            (4, 2),
            "0.5 counts as up, so B on the 4th misses"
        );
        assert_eq!(a.hit_rate, Some(0.5));
        let brier = (0.09 + 0.36 + 0.25 + 0.2025) / 4.0;
        assert!((a.brier.unwrap() - brier).abs() < 1e-12);
        assert_eq!(a.up_rate, Some(0.75));
        let bins: Vec<(f64, usize)> = a.calibration.iter().map(|b| (b.bin[0], b.n)).collect();
        assert_eq!(bins, [(0.4, 1), (0.5, 2), (0.7, 1)]);
        assert_eq!(accuracy("v1", &[]).hit_rate, None);
    }

    #[test]
    fn the_journal_counts_a_bar_once_and_resolves_it_once() {
        let journal = Journal {
            store: MemStore::default(),
        };
        journal.record(&prediction("A", "2010-01-05", 0.6));
        journal.record(&prediction("A", "2010-01-04", 0.6));
        journal.record(&prediction("A", "2010-01-04", 0.7)); // same bar again: replaces
        assert_eq!(journal.pending_count("v1"), 2);
        let pending = journal.pending();
        assert_eq!(pending[0].date.to_string(), "2010-01-04", "oldest first");
        assert_eq!(pending[0].probability_up, 0.7);
        journal.resolve(pending[0].clone(), true);
        assert_eq!(journal.pending_count("v1"), 1);
        journal.record(&prediction("A", "2010-01-04", 0.1)); // already scored: kept
        assert_eq!(journal.pending_count("v1"), 1);
        let resolved = journal.resolved("v1", None);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            (resolved[0].probability_up, resolved[0].outcome_up),
            (0.7, Some(true))
        );
        journal.resolve(journal.pending()[0].clone(), false);
        let last = journal.resolved("v1", Some(1));
        assert_eq!(
            last[0].date.to_string(),
            "2010-01-05",
            "the window keeps the newest"
        );
        assert!(journal.resolved("v2", None).is_empty());
    }

    #[test]
    fn the_latency_histogram_renders_cumulative_buckets() {
        let journal = Journal {
            store: MemStore::default(),
        };
        for seconds in [0.0004, 0.003, 0.003, 9.0] {
            journal.observe_latency("v1", seconds);
        }
        let mut text = String::new();
        journal
            .latency("v1")
            .render("lat", "model_version=\"v1\"", &mut text);
        assert!(
            text.contains("lat_bucket{model_version=\"v1\",le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{model_version=\"v1\",le=\"0.005\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{model_version=\"v1\",le=\"2.5\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_bucket{model_version=\"v1\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_count{model_version=\"v1\"} 4\n"),
            "{text}"
        );
    }
}
