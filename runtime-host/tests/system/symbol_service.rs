//! symbol-service through the host, calling data-service by service chaining.

use crate::common::*;
use serde_json::{Value, json};

fn project(state: &std::path::Path) -> runtime_host::AppSettings {
    project_of("spin.toml", state)
}

/// data-service and symbol-service of `manifest` (`spin.toml`: composed,
/// `spin.pods.toml`: each as in a pod of its own).
fn project_of(manifest: &str, state: &std::path::Path) -> runtime_host::AppSettings {
    let mut settings = settings(&workspace_root().join(manifest), state);
    settings.components = vec!["data-service".into(), "symbol-service".into()];
    settings
}

/// The count of `component`'s typed calls to `dependency`'s `function` of
/// `daytrade:platform/data`.
fn linked_calls(metrics: &str, component: &str, dependency: &str, function: &str) -> f64 {
    metric_value(
        metrics,
        &format!(
            "runtime_host_linked_calls_total{{component=\"{component}\",dependency=\"{dependency}\",\
             function=\"daytrade:platform/data@0.1.0#{function}\"}}"
        ),
    )
}

/// The same screening whether data-service is composed into symbol-service
/// (a typed call) or in a pod of its own (the typed import is the HTTP
/// adapter `data-remote`, and every call a request data-service serves).
#[tokio::test]
async fn composed_or_over_http_the_screening_is_the_same() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let composed = start(&project_of("spin.toml", one.path())).await;
    let pods = start(&project_of("spin.pods.toml", two.path())).await;
    let path = "/api/v1/symbols/recommend?limit=20";
    let (status, in_process) = get(&composed, path).await;
    assert_eq!(status, 200, "{in_process}");
    let (status, over_http) = get(&pods, path).await;
    assert_eq!(status, 200, "{over_http}");
    let (a, b): (Value, Value) = (
        serde_json::from_str(&in_process).unwrap(),
        serde_json::from_str(&over_http).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(a["recommendations"].as_array().unwrap().len(), 20);

    let metrics = metrics(&pods).await;
    let remote = |function| linked_calls(&metrics, "symbol-service", "data_remote", function);
    assert_eq!(
        (remote("symbols"), remote("clock"), remote("closes")),
        (1.0, 1.0, 11.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_http_requests_total{component=\"data-service\",status=\"200\"}"
        ),
        13.0,
        "each typed call one request"
    );
    // An error crosses the adapter as it is: the caller's bad symbol.
    for host in [&composed, &pods] {
        let (status, body) = post_json(
            host,
            "/api/v1/symbols/screen",
            json!({ "universe": ["IBM", "ZZZZ"], "filters": { "min_history": 1 } }),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["fetch_failures"][0]["symbol"], "ZZZZ");
        assert_eq!(body["fetch_failures"][0]["error"]["code"], "unknown-symbol");
    }
    composed.shutdown().await;
    pods.shutdown().await;
}

/// A dependency gets only what it inherits: composed without the key-value
/// store, data-service cannot open it (Spin's deny-by-default), and the
/// screening fails with data-service's own error: a configuration mistake.
#[tokio::test]
async fn a_dependency_uses_only_the_grants_it_inherits() {
    let dir = tempfile::tempdir().unwrap();
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("spin.toml")).unwrap().replace(
        r#"{ path = "target/wasm32-wasip2/component/data_service.wasm", inherit_configuration = true }"#,
        r#"{ path = "target/wasm32-wasip2/component/data_service.wasm", inherit_configuration = ["variables", "files"] }"#,
    );
    assert!(text.contains(r#"inherit_configuration = ["variables", "files"]"#));
    // The manifest's relative paths are the project's.
    let manifest = root.join(format!(".spin-test-{}.toml", std::process::id()));
    std::fs::write(&manifest, text).unwrap();
    let mut settings = settings(&manifest, dir.path());
    settings.components = vec!["data-service".into(), "symbol-service".into()];
    settings
        .variables
        .push(("replay_date".into(), TEST_REPLAY_DATE.into()));
    let host = start(&settings).await;
    std::fs::remove_file(&manifest).unwrap();
    let (status, body) = get(&host, "/api/v1/symbols/recommend").await;
    assert_eq!(status, 500, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "configuration", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("data-service: key-value store `default`"),
        "{message}"
    );
    let metrics = metrics(&host).await;
    assert_eq!(
        linked_calls(&metrics, "symbol-service", "data-service", "symbols"),
        1.0
    );
    host.shutdown().await;
}

#[tokio::test]
async fn recommends_from_the_bundled_universe_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let (status, body) = get(&host, "/api/v1/symbols/recommend?limit=5").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["as_of"], "2010-08-20");
    assert_eq!(body["universe"], 525);
    let recs = body["recommendations"].as_array().unwrap();
    assert_eq!(recs.len(), 5);
    let scores: Vec<f64> = recs.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    for rec in recs {
        assert!(rec["metrics"]["avg_turnover"].as_f64().unwrap() >= 10_000_000.0);
        assert!(!rec["reasons"].as_array().unwrap().is_empty());
    }
    assert!(
        body["passed"].as_u64().unwrap() > 100,
        "most large caps pass: {}",
        body["passed"]
    );

    // Composed with data-service: the symbol list, the clock and 11
    // batches of ≤ 50 closes were typed calls, and no HTTP request at all.
    let metrics = metrics(&host).await;
    let linked = |function| linked_calls(&metrics, "symbol-service", "data-service", function);
    assert_eq!(
        (linked("symbols"), linked("clock"), linked("closes")),
        (1.0, 1.0, 11.0)
    );
    assert!(
        !metrics.contains("runtime_host_http_requests_total{component=\"data-service\""),
        "{metrics}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn screens_with_the_callers_filters_and_explains_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let (status, body) = post_json(
        &host,
        "/api/v1/symbols/screen",
        json!({
            "universe": ["AAPL", "IBM", "MSFT", "GOOG", "ZZZZ"],
            "filters": { "min_history": 60, "min_price": 100.0 },
            "limit": 10
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let passed: Vec<&str> = body["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    // Adjusted closes in August 2010: IBM ~ 115-130, GOOG ~ 450-490; AAPL ~ 30 (adjusted), MSFT ~ 20.
    let mut sorted = passed.clone();
    sorted.sort();
    assert_eq!(sorted, ["GOOG", "IBM"]);
    let rejected: Vec<(&str, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["symbol"].as_str().unwrap(), r["filter"].as_str().unwrap()))
        .collect();
    assert!(rejected.contains(&("MSFT", "min_price")), "{rejected:?}");
    assert_eq!(body["fetch_failures"][0]["symbol"], "ZZZZ");
    assert_eq!(body["fetch_failures"][0]["error"]["code"], "unknown-symbol");
    host.shutdown().await;
}

/// Screening hourly bars: volatility annualised over the bars a year the
/// series has (24 a day for BTC/USD, every day; 24 a weekday for EUR/USD),
/// so a currency pair and a crypto-currency land where they trade.
#[tokio::test]
async fn screens_hourly_bars_annualised_by_their_own_calendar() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings
        .variables
        .push(("admin_token".into(), "s3cret".into()));
    let host = start(&settings).await;
    put_clock(
        &format!("http://{}", host.addr),
        "s3cret",
        json!({"mode": "replay", "as_of": "2017-09-15T12:00:00Z", "market": "crypto", "interval": "1h"}),
    )
    .await;
    let no_limits = json!({
        "min_history": 60, "min_price": null, "min_avg_volume": null,
        "min_avg_turnover": null, "min_volatility": null, "max_volatility": null,
    });
    let (status, body) = post_json(
        &host,
        "/api/v1/symbols/screen",
        json!({ "universe": ["BTC-USD", "EURUSD=X"], "filters": no_limits, "interval": "1h" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["interval"], "1h");
    let volatility = |symbol: &str| {
        body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["symbol"] == symbol)
            .unwrap_or_else(|| panic!("{symbol}: {body}"))["metrics"]["volatility"]
            .as_f64()
            .unwrap()
    };
    let (btc, eur) = (volatility("BTC-USD"), volatility("EURUSD=X"));
    assert!((0.3..3.0).contains(&btc), "BTC/USD annualised {btc}");
    assert!((0.02..0.3).contains(&eur), "EUR/USD annualised {eur}");
    let (status, body) = get(&host, "/api/v1/symbols/recommend?interval=2h").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unsupported-interval"), "{body}");
    host.shutdown().await;
}

#[tokio::test]
async fn bad_screening_input_gets_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    for path in [
        "/api/v1/symbols/recommend?limit=0",
        "/api/v1/symbols/recommend?limit=abc",
        "/api/v1/symbols/recommend?limit=101",
    ] {
        let (status, body) = get(&host, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("invalid-limit"), "{body}");
    }
    let cases = [
        json!({ "filters": { "min_prize": 5 } }),
        json!({ "filters": { "min_volatility": 0.5, "max_volatility": 0.1 } }),
        json!({ "universe": [] }),
    ];
    for case in cases {
        let (status, body) = post_json(&host, "/api/v1/symbols/screen", case.clone()).await;
        assert_eq!(status, 400, "{case}: {body}");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn a_universe_file_is_a_variable_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings.variables.push((
        "universe_file".into(),
        "/config/universes/tse-large-caps.txt".into(),
    ));
    let host = start(&settings).await;
    let (status, body) = get(&host, "/api/v1/symbols/recommend").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["universe"], 20);
    // No Tokyo history is bundled: every symbol is reported, none invented.
    assert_eq!(body["fetch_failures"].as_array().unwrap().len(), 20);
    assert_eq!(body["fetch_failures"][0]["symbol"], "7203.T");
    assert!(body["recommendations"].as_array().unwrap().is_empty());
    host.shutdown().await;
}
