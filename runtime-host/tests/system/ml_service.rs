//! ml-service through the host: tract inside the component, features from
//! data-service by service chaining, the journal and the accuracy monitor.

use crate::common::*;
use daytrade_contract::wit_check::assert_projects;
use serde_json::{Value, json};

const ADMIN: &str = "s3cret";

fn project(state: &std::path::Path) -> runtime_host::AppSettings {
    let mut settings = settings(&workspace_root().join("spin.toml"), state);
    settings.components = vec!["data-service".into(), "ml-service".into()];
    settings
        .variables
        .push(("admin_token".into(), ADMIN.into()));
    settings.request_timeout = std::time::Duration::from_secs(30);
    settings.engine.max_instance_memory = 128 << 20;
    settings
}

fn models_dir() -> std::path::PathBuf {
    workspace_root().join("components/ml-service/models")
}

fn read_json(version: &str, file: &str) -> Value {
    let path = models_dir().join(version).join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn the_component_reproduces_the_golden_onnxruntime_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    for version in ["v1", "v2"] {
        let golden = read_json(version, "golden.json");
        let mut worst = 0f64;
        for (i, features) in golden["inputs"].as_array().unwrap().iter().enumerate() {
            let (status, body) = post_json(
                &host,
                "/api/v1/ml/predict",
                json!({ "symbol": "GOLDEN", "features": features, "model_version": version }),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let p = body["probability_up"].as_f64().unwrap();
            worst = worst.max((p - golden["probability_up"][i].as_f64().unwrap()).abs());
            for member in body["members"].as_array().unwrap() {
                let name = member["name"].as_str().unwrap();
                let expected = golden["members"][name][i].as_f64().unwrap();
                worst = worst.max((member["probability_up"].as_f64().unwrap() - expected).abs());
            }
            assert_eq!(body["model_version"], version);
            assert_eq!(
                body["snapshot"]["file"], "model.onnx",
                "no date: the newest model"
            );
            assert_eq!(
                body["recorded"], false,
                "no date, nothing to resolve against"
            );
            let direction = if p >= 0.5 { "up" } else { "down" };
            assert_eq!(body["direction"], direction);
            let confidence = body["confidence"].as_f64().unwrap();
            assert!((confidence - (2.0 * p - 1.0).abs()).abs() < 1e-12);
        }
        assert!(
            worst <= 1e-5,
            "{version}: component differs from onnxruntime by {worst}"
        );

        // The same rows as one batch: one graph run, the same numbers.
        let rows: Vec<Value> = golden["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, f)| json!({ "symbol": format!("ROW{i}"), "features": f }))
            .collect();
        let (status, batch) = post_json(
            &host,
            "/api/v1/ml/batch-predict",
            json!({ "rows": rows, "model_version": version }),
        )
        .await;
        assert_eq!(status, 200, "{batch}");
        assert_eq!(batch["model_runs"], 1);
        for (i, p) in batch["predictions"].as_array().unwrap().iter().enumerate() {
            assert_eq!(p["symbol"], format!("ROW{i}"));
            let expected = golden["probability_up"][i].as_f64().unwrap();
            assert!((p["probability_up"].as_f64().unwrap() - expected).abs() <= 1e-5);
        }
    }
    host.shutdown().await;
}

#[tokio::test]
async fn predicts_from_data_services_features_with_the_model_of_the_day() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let (status, one) = post_json(&host, "/api/v1/ml/predict", json!({ "symbol": "AAPL" })).await;
    assert_eq!(status, 200, "{one}");
    // The replay clock (2010-08-20) picks the bar and the 2010 walk-forward model.
    assert_eq!(one["date"], "2010-08-20");
    assert_eq!(one["model_version"], "v1");
    assert_eq!(one["snapshot"]["file"], "walk-forward/2010.onnx");
    assert_eq!(one["recorded"], true);
    let (_, features) = get_json(&host, "/api/v1/data/features/AAPL").await;
    assert_eq!(one["features_used"]["values"], features["values"]);
    assert_eq!(one["features_used"]["names"], features["names"]);
    // The JSON is the projection of ml.wit's records.
    assert_projects(&one, "ml", "prediction");
    assert_projects(&one["members"][0], "ml", "member-vote");
    assert_projects(&one["snapshot"], "ml", "snapshot-info");
    assert_projects(&one["features_used"], "ml", "features-used");
    let action = one["action"].as_str().unwrap();
    assert!(["buy", "sell", "hold"].contains(&action));

    let (status, batch) = post_json(
        &host,
        "/api/v1/ml/batch-predict",
        json!({ "symbols": ["AAPL", "IBM", "MSFT", "ZZZZ"], "model_version": "v2" }),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["model_runs"], 1, "one model run for the batch");
    let symbols: Vec<&str> = batch["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, ["AAPL", "IBM", "MSFT"]);
    assert_projects(&batch, "ml", "batch-result");
    assert_projects(&batch["errors"][0], "ml", "symbol-error");
    assert_eq!(batch["errors"][0]["symbol"], "ZZZZ");
    assert_eq!(batch["errors"][0]["error"]["code"], "unknown-symbol");
    assert_ne!(
        batch["predictions"][0]["probability_up"], one["probability_up"],
        "v2 is another model"
    );

    let (status, models) = get_json(&host, "/api/v1/ml/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["served"], "v1");
    let v1 = &models["versions"][0];
    assert_eq!(v1["served"], true);
    assert_eq!(
        v1["metadata"]["evaluation"]["pooled"],
        read_json("v1", "metadata.json")["evaluation"]["pooled"]
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_v2_deployment_serves_v2() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings
        .variables
        .push(("ml_model_version".into(), "v2".into()));
    let host = start(&settings).await;
    let (status, body) = post_json(&host, "/api/v1/ml/predict", json!({ "symbol": "IBM" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_version"], "v2");
    let members: Vec<&str> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["forest", "logreg", "mlp"]);
    host.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let predict = "/api/v1/ml/predict";
    let ten = vec![0.1; 10];
    let cases = [
        (
            predict,
            json!({ "symbol": "AAPL", "model_version": "v9" }),
            404,
            "unknown-model-version",
        ),
        (
            predict,
            json!({ "symbol": "AAPL", "features": [0.1, 0.2] }),
            422,
            "invalid-features",
        ),
        (
            predict,
            json!({ "symbol": "AAPL", "features": [1e39, 0, 0, 0, 0, 0, 0, 0, 0, 0] }),
            422,
            "invalid-features",
        ),
        (
            predict,
            json!({ "symbol": "AAPL", "features": ten, "date": "2003-05-01" }),
            422,
            "no-model-for-date",
        ),
        (
            predict,
            json!({ "symbol": "AAPL", "date": "2003-05-01" }),
            422,
            "no-model-for-date",
        ),
        (
            predict,
            json!({ "symbol": "../etc", "features": ten }),
            400,
            "invalid-symbol",
        ),
        (predict, json!({ "symbol": "ZZZZ" }), 404, "unknown-symbol"),
        (
            predict,
            json!({ "symbol": "AAPL", "colour": "red" }),
            400,
            "unknown-field",
        ),
        (predict, json!({ "features": ten }), 400, "invalid-symbol"),
        (
            predict,
            json!({ "symbol": "AAPL", "features": vec!["NaN"; 10] }),
            400,
            "invalid-features",
        ),
        (
            "/api/v1/ml/batch-predict",
            json!({ "symbols": vec!["AAPL"; 101] }),
            400,
            "batch-too-large",
        ),
        (
            "/api/v1/ml/batch-predict",
            json!({ "symbols": [] }),
            400,
            "batch-too-large",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = post_json(&host, path, body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body} → {answer}"
        );
        assert!(!answer["message"].as_str().unwrap().is_empty());
    }
    let resp = client()
        .post(url(&host, predict))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (status, body) = get_json(&host, "/api/v1/ml/accuracy?window=-3").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-window"))
    );
    let (status, body) = get_json(&host, "/api/v1/ml/accuracy?model_version=v7").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown-model-version"))
    );
    host.shutdown().await;
}

/// The honest-monitor test: replay the test folds of the walk-forward
/// evaluation through the live path — batch-predict per trading day (features
/// from data-service, the model of that day, predictions journaled), then
/// `POST /outcomes` (outcomes from data-service's later bars) — and the
/// monitor must report training's pooled figures.
#[tokio::test]
async fn replaying_the_history_through_the_live_path_reproduces_the_offline_figures() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let metadata = read_json("v1", "metadata.json");
    let symbols = metadata["symbols"].clone();
    let first = metadata["snapshots"][0]["serves_from"]
        .as_str()
        .unwrap()
        .to_string();
    let last_row = metadata["training_window"][1].as_str().unwrap().to_string();
    // The clock at the last bundled day, so every test row's next bar exists.
    let resp = client()
        .put(url(&host, "/api/v1/data/clock"))
        .header("x-admin-token", ADMIN)
        .body(r#"{"mode":"replay","as_of":"2013-03-01"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, days) = get_json(
        &host,
        &format!("/api/v1/data/stocks/AAPL?from={first}&to={last_row}"),
    )
    .await;
    let days: Vec<String> = days["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["date"].as_str().unwrap().to_string())
        .collect();
    assert!(days.len() > 2000, "{} trading days", days.len());

    for day in &days {
        let (status, body) = post_json(
            &host,
            "/api/v1/ml/batch-predict",
            json!({ "symbols": symbols, "date": day }),
        )
        .await;
        assert_eq!(status, 200, "{day}: {body}");
        assert_eq!(body["model_runs"], 1, "{day}");
    }
    let (status, resolved) = post_json(&host, "/api/v1/ml/outcomes", json!({})).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["pending"], 0, "{resolved}");
    assert_projects(&resolved, "ml", "outcome-report");

    let offline = &metadata["evaluation"]["pooled"]["ensemble"];
    let (status, live) = get_json(&host, "/api/v1/ml/accuracy?model_version=v1&window=all").await;
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["n"], offline["n"], "every test row once: {live}");
    assert_projects(&live, "ml", "accuracy-report");
    assert_projects(&live["calibration"][0], "ml", "calibration-bin");
    // f32 inference may move a probability by 1e-7: at most one row may flip.
    let n = offline["n"].as_f64().unwrap();
    for (live_name, offline_name, tolerance) in [
        ("hit_rate", "accuracy", 1.0 / n),
        ("auc", "auc", 1e-5),
        ("brier", "brier", 1e-5),
    ] {
        let got = live[live_name].as_f64().unwrap();
        let want = offline[offline_name].as_f64().unwrap();
        assert!(
            (got - want).abs() <= tolerance,
            "{live_name}: live {got} vs offline {want}"
        );
    }
    eprintln!(
        "replay: {} rows, hit rate {} (offline {}), AUC {} (offline {}), Brier {} (offline {})",
        live["n"],
        live["hit_rate"],
        offline["accuracy"],
        live["auc"],
        offline["auc"],
        live["brier"],
        offline["brier"]
    );

    // Predicting a resolved bar again does not count it twice.
    let (status, _) = post_json(
        &host,
        "/api/v1/ml/batch-predict",
        json!({ "symbols": symbols, "date": days[100] }),
    )
    .await;
    assert_eq!(status, 200);
    let (_, again) = get_json(&host, "/api/v1/ml/accuracy?model_version=v1&window=all").await;
    assert_eq!(
        (again["n"].clone(), again["pending"].clone()),
        (live["n"].clone(), json!(0))
    );

    let (status, text) = get(&host, "/api/v1/ml/metrics").await;
    assert_eq!(status, 200);
    promtool_check(&text);
    let window = get_json(&host, "/api/v1/ml/accuracy?model_version=v1&window=500")
        .await
        .1;
    let gauge = metric_value(&text, "ml_prediction_accuracy{model_version=\"v1\"}");
    assert!(
        (gauge - window["hit_rate"].as_f64().unwrap()).abs() < 1e-12,
        "{text}"
    );
    let count = metric_value(
        &text,
        "ml_prediction_latency_seconds_count{model_version=\"v1\"}",
    );
    assert_eq!(count, days.len() as f64 + 1.0);
    host.shutdown().await;
}
