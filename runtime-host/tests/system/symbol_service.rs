//! symbol-service through the host, calling data-service by service chaining.

use crate::common::*;
use serde_json::{Value, json};

fn project(state: &std::path::Path) -> runtime_host::AppSettings {
    let mut settings = settings(&workspace_root().join("spin.toml"), state);
    settings.components = vec!["data-service".into(), "symbol-service".into()];
    settings
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

    // data-service saw the symbol list, the clock and 11 batches of ≤ 50 — not 525 requests.
    let metrics = metrics(&host).await;
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_http_requests_total{component=\"data-service\",status=\"200\"}"
        ),
        13.0
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
