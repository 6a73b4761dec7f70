//! The shipped models: what the registry embeds, what tract computes, and the
//! walk-forward evaluation replayed on data-service's own features.

use chrono::NaiveDate;
use forecasting::monitor::{self, Prediction};
use forecasting::{Error, Registry, RegistryError, Row};
use market_data::History;
use market_data::features::{FEATURE_NAMES, feature_rows};
use sha2::{Digest, Sha256};

fn registry() -> &'static Registry {
    Registry::embedded().expect("the embedded models parse")
}

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn read_json(version: &str, file: &str) -> serde_json::Value {
    let path = format!("{}/../models/{version}/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_snapshot_is_embedded_with_its_checksum() {
    let names: Vec<&str> = registry()
        .versions()
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, ["v1", "v2"]);
    for version in registry().versions() {
        assert_eq!(
            version.snapshots.len(),
            10,
            "{}: 9 folds and the full model",
            version.name
        );
        for snapshot in &version.snapshots {
            let bytes = version.file(snapshot).unwrap();
            assert_eq!(
                format!("{:x}", Sha256::digest(bytes)),
                snapshot.sha256,
                "{} {}",
                version.name,
                snapshot.file
            );
            assert!(
                snapshot.training_window[1] < snapshot.serves_from,
                "{snapshot:?}"
            );
        }
    }
}

#[test]
fn the_models_take_data_services_features_in_its_order() {
    for version in registry().versions() {
        assert_eq!(version.features, FEATURE_NAMES, "{}", version.name);
    }
}

#[test]
fn a_date_is_served_by_the_newest_snapshot_trained_before_it() {
    let v1 = registry().version("v1").unwrap();
    let cases = [
        ("2005-01-01", "walk-forward/2005.onnx"),
        ("2007-06-15", "walk-forward/2007.onnx"),
        ("2012-12-31", "walk-forward/2012.onnx"),
        ("2013-02-27", "walk-forward/2013.onnx"),
        ("2026-11-27", "model.onnx"),
    ];
    for (day, file) in cases {
        assert_eq!(
            v1.snapshot_for(Some(date(day))).unwrap().file,
            file,
            "{day}"
        );
    }
    assert_eq!(v1.snapshot_for(None).unwrap().file, "model.onnx");
    assert!(matches!(
        v1.snapshot_for(Some(date("2004-12-31"))),
        Err(RegistryError::NoModelForDate { .. })
    ));
    let unknown = registry().version("v3").unwrap_err();
    assert_eq!(unknown.code(), "unknown-model-version");
}

/// tract reproduces onnxruntime's outputs at export time (ensemble and members).
#[test]
fn tract_matches_the_golden_onnxruntime_outputs() {
    for version in registry().versions() {
        let golden = read_json(&version.name, "golden.json");
        let rows: Vec<Row> = golden["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| Row {
                symbol: "GOLDEN".into(),
                date: None,
                names: None,
                values: r
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect(),
            })
            .collect();
        let batch = forecasting::forecast(version, rows).unwrap();
        assert_eq!(batch.runs, 1);
        let mut worst = 0f64;
        for (i, scored) in batch.scored.iter().enumerate() {
            let expected = golden["probability_up"][i].as_f64().unwrap();
            worst = worst.max((scored.forecast.probability_up - expected).abs());
            for member in &scored.forecast.members {
                let expected = golden["members"][&member.name][i].as_f64().unwrap();
                worst = worst.max((member.probability_up - expected).abs());
            }
        }
        assert!(
            worst <= 1e-5,
            "{}: tract differs from onnxruntime by {worst}",
            version.name
        );
        let members: Vec<&str> = batch.scored[0]
            .forecast
            .members
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(members, version.members);
    }
}

#[test]
fn a_batch_keeps_its_order_across_snapshots_and_checks_every_row() {
    let v2 = registry().version("v2").unwrap();
    let row = |day: &str, x: f64| Row {
        symbol: day.into(),
        date: Some(date(day)),
        names: None,
        values: vec![x; 10],
    };
    let rows = vec![
        row("2012-03-01", 0.1),
        row("2006-03-01", 0.1),
        row("2012-03-02", 0.1),
    ];
    let batch = forecasting::forecast(v2, rows).unwrap();
    assert_eq!(batch.runs, 2);
    let order: Vec<&str> = batch.scored.iter().map(|s| s.row.symbol.as_str()).collect();
    assert_eq!(order, ["2012-03-01", "2006-03-01", "2012-03-02"]);
    assert_eq!(batch.scored[1].snapshot.file, "walk-forward/2006.onnx");
    // Same input, different snapshots: the 2006 model is not the 2012 one.
    assert_ne!(batch.scored[0].forecast, batch.scored[1].forecast);
    assert_eq!(batch.scored[0].forecast, batch.scored[2].forecast);

    let bad = |values: Vec<f64>| {
        let rows = vec![
            row("2012-03-01", 0.0),
            Row {
                values,
                ..row("2012-03-01", 0.0)
            },
        ];
        forecasting::forecast(v2, rows).unwrap_err()
    };
    for (values, code) in [
        (vec![0.0; 9], "invalid-features"),
        (vec![f64::NAN; 10], "invalid-features"),
        (vec![1e39; 10], "invalid-features"),
    ] {
        let e = bad(values);
        assert_eq!((e.code(), e.status()), (code, 422), "{e}");
    }
    let e = forecasting::forecast(v2, vec![row("2012-03-01", 0.0); 101]).unwrap_err();
    assert_eq!((e.code(), e.status()), ("batch-too-large", 400));
    let e = forecasting::forecast(v2, vec![row("2001-03-01", 0.0)]).unwrap_err();
    assert_eq!((e.code(), e.status()), ("no-model-for-date", 422));
    let e = forecasting::forecast(
        v2,
        vec![Row {
            names: Some(vec!["rsi_14".into()]),
            ..row("2012-03-01", 0.0)
        }],
    )
    .unwrap_err();
    assert!(matches!(e, Error::FeatureMismatch { .. }));
}

/// The walk-forward evaluation, replayed with data-service's features (the Rust
/// code, not training's Python) and tract: every test row of every fold is
/// forecast by the snapshot for its date and scored by the monitor. The figures
/// must be training's pooled figures.
#[test]
fn replaying_the_test_folds_reproduces_the_offline_evaluation() {
    let history = History::bundled().unwrap();
    for version in registry().versions() {
        let metadata = read_json(&version.name, "metadata.json");
        let symbols: Vec<String> = serde_json::from_value(metadata["symbols"].clone()).unwrap();
        let first_test = version.snapshots[0].serves_from;
        let last_label = version.snapshots.last().unwrap().serves_from;
        let mut predictions = Vec::new();
        for symbol in &symbols {
            let bars = history.bars(symbol, None, None).unwrap();
            let rows = feature_rows(&bars);
            let mut batch = Vec::new();
            let mut outcomes = Vec::new();
            for i in 0..bars.len() - 1 {
                let Some(values) = &rows[i] else { continue };
                if bars[i].date < first_test || bars[i].date >= last_label {
                    continue;
                }
                batch.push(Row {
                    symbol: symbol.clone(),
                    date: Some(bars[i].date),
                    names: None,
                    values: values.clone(),
                });
                outcomes.push(bars[i + 1].close > bars[i].close);
            }
            for (chunk, ups) in batch.chunks(100).zip(outcomes.chunks(100)) {
                let scored = forecasting::forecast(version, chunk.to_vec()).unwrap();
                for (s, &up) in scored.scored.into_iter().zip(ups) {
                    predictions.push(Prediction {
                        model_version: version.name.clone(),
                        snapshot: s.snapshot.serves_from,
                        symbol: s.row.symbol,
                        date: s.row.date.unwrap(),
                        probability_up: s.forecast.probability_up,
                        outcome_up: Some(up),
                    });
                }
            }
        }
        let live = monitor::accuracy(&version.name, &predictions);
        let offline = &metadata["evaluation"]["pooled"]["ensemble"];
        assert_eq!(
            live.n as u64,
            offline["n"].as_u64().unwrap(),
            "{}: test rows",
            version.name
        );
        // f32 inference may move a probability by 1e-7: at most one row may flip.
        let n = live.n as f64;
        for (figure, got, tolerance) in [
            ("accuracy", live.hit_rate, 1.0 / n),
            ("auc", live.auc, 1e-5),
            ("brier", live.brier, 1e-5),
        ] {
            let want = offline[figure].as_f64().unwrap();
            let got = got.unwrap();
            assert!(
                (got - want).abs() <= tolerance,
                "{} {figure}: live {got} vs offline {want}",
                version.name
            );
        }
    }
}
