//! The project's own spin.toml: every service answers health and version,
//! and services reach each other by local service chaining.

use crate::common::*;

fn project_settings(state: &std::path::Path) -> runtime_host::AppSettings {
    settings(&workspace_root().join("spin.toml"), state)
}

const SERVICES: [(&str, &str); 5] = [
    ("data-service", "/api/v1/data"),
    ("symbol-service", "/api/v1/symbols"),
    ("ml-service", "/api/v1/ml"),
    ("execution-service", "/api/v1/execution"),
    ("notification-service", "/api/v1/notifications"),
];

#[tokio::test]
async fn every_service_answers_health_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project_settings(dir.path())).await;
    for (id, prefix) in SERVICES {
        let (status, body) = get(&host, &format!("{prefix}/health")).await;
        assert_eq!(status, 200, "{id}: {body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["service"], id);
        assert_eq!(health["status"], "ok");

        let (status, body) = get(&host, &format!("{prefix}/version")).await;
        assert_eq!(status, 200, "{id}: {body}");
        let version: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(version["service"], id);
        assert_eq!(version["contract"], "daytrade:platform@0.1.0");

        let (status, body) = get(&host, &format!("{prefix}/no-such-route")).await;
        assert_eq!(status, 404, "{id}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["code"], "not-found");
    }
    host.shutdown().await;
}

#[tokio::test]
async fn services_reach_each_other_by_service_chaining() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project_settings(dir.path())).await;
    let (status, body) = get(&host, "/api/v1/execution/health?deep=true").await;
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok", "{body}");
    let deps: Vec<(String, String)> = health["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["service"].as_str().unwrap().into(),
                d["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        deps,
        [
            ("configuration", "ok"),
            ("data-service", "ok"),
            ("symbol-service", "ok"),
            ("ml-service", "ok"),
            ("notification-service", "ok")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let metrics = metrics(&host).await;
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_http_requests_total{component=\"data-service\",status=\"200\"}"
        ),
        1.0,
        "the chained call was served in-process by data-service"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn selective_deployment_runs_a_subset() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project_settings(dir.path());
    settings.components = vec!["data-service".into()];
    let host = start(&settings).await;
    assert_eq!(get(&host, "/api/v1/data/health").await.0, 200);
    assert_eq!(get(&host, "/api/v1/ml/health").await.0, 404);
    host.shutdown().await;

    // A selected component may not chain to one that is not selected...
    settings.components = vec!["symbol-service".into()];
    let err = try_start(&settings).await.unwrap_err();
    assert!(format!("{err:#}").contains("not selected"), "{err:#}");

    // ...unless its upstream is given a cluster URL, as in Kubernetes.
    settings.env.insert(
        "SPIN_VARIABLE_DATA_SERVICE_URL".into(),
        "http://data-service.trading.svc.cluster.local".into(),
    );
    let host = start(&settings).await;
    assert_eq!(get(&host, "/api/v1/symbols/health").await.0, 200);
    host.shutdown().await;
}

/// A value out of range is a 4xx whose code names the field, never a default
/// or a clamp: flags that are neither true nor false, dates after the market
/// clock, negative weights, limits out of range.
#[tokio::test]
async fn out_of_range_input_is_refused_with_a_code_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project_settings(dir.path());
    settings
        .variables
        .push(("admin_token".into(), "s3cret".into()));
    let host = start(&settings).await;
    let (_, clock) = get_json(&host, "/api/v1/data/clock").await;
    let as_of =
        chrono::NaiveDate::parse_from_str(clock["date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let after = as_of + chrono::Duration::days(3);
    let cases = [
        ("/api/v1/data/health?deep=yes".to_string(), "invalid-deep"),
        ("/api/v1/execution/health?deep=maybe".into(), "invalid-deep"),
        (
            "/api/v1/data/stocks/AAPL?include_features=yes".into(),
            "invalid-include_features",
        ),
        (format!("/api/v1/data/stocks/AAPL?to={after}"), "invalid-to"),
        (
            format!("/api/v1/data/stocks/AAPL?from={after}"),
            "invalid-from",
        ),
        (
            format!("/api/v1/data/features/AAPL?date={after}"),
            "invalid-date",
        ),
        (
            "/api/v1/data/stocks/AAPL?from=2010-13-01".into(),
            "invalid-from",
        ),
        ("/api/v1/notifications?limit=9999".into(), "invalid-limit"),
        ("/api/v1/notifications?limit=0".into(), "invalid-limit"),
        // A parameter a route does not take is refused, not ignored; one
        // given twice is not silently the first (or the last) of them.
        (
            "/api/v1/data/stocks/AAPL?form=2010-01-04".into(),
            "unknown-parameter",
        ),
        ("/api/v1/data/version?verbose=1".into(), "unknown-parameter"),
        ("/api/v1/ml/models?version=v2".into(), "unknown-parameter"),
        (
            "/api/v1/execution/orders?limit=5&limit=500".into(),
            "invalid-limit",
        ),
        (
            "/api/v1/data/stocks/AAPL?from=2010-01-04&from=2010-02-01".into(),
            "invalid-from",
        ),
    ];
    for (path, code) in &cases {
        let resp = client()
            .get(url(&host, path))
            .bearer_auth("dev-viewer-key")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some(*code)),
            "{path}: {body}"
        );
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let (status, body) = get_json(&host, &format!("/api/v1/data/stocks/AAPL?to={as_of}")).await;
    assert_eq!(status, 200, "the clock's own date is fine: {body}");

    let post = |key: &'static str, path: &'static str, body: serde_json::Value| {
        let request = client().post(url(&host, path)).bearer_auth(key).json(&body);
        async move {
            let resp = request.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let weights = serde_json::json!({"liquidity": -0.35, "volatility": 0.25,
        "volume_consistency": 0.2, "size": 0.2});
    let viewer = "dev-viewer-key";
    let features = vec![0.1; 10];
    let cases = [
        (
            "/api/v1/symbols/screen",
            serde_json::json!({"weights": weights, "universe": ["AAPL"]}),
            "invalid-weights.liquidity",
        ),
        (
            "/api/v1/symbols/screen",
            serde_json::json!({"weights": {"liquidity": "high"}, "universe": ["AAPL"]}),
            "invalid-weights.liquidity",
        ),
        (
            "/api/v1/symbols/screen",
            serde_json::json!({"filters": {"min_price": -1.0}, "universe": ["AAPL"]}),
            "invalid-filters.min_price",
        ),
        (
            "/api/v1/symbols/screen",
            serde_json::json!({"universe": ["AAPL", "MSFT", "aapl"]}),
            "invalid-universe",
        ),
        (
            "/api/v1/symbols/screen",
            serde_json::json!({"universe": ["AAPL", "not a ticker"]}),
            "invalid-universe",
        ),
        (
            "/api/v1/data/batch-features",
            serde_json::json!({"symbols": ["AAPL"], "date": after}),
            "invalid-date",
        ),
        (
            "/api/v1/data/batch-fetch",
            serde_json::json!({"symbols": ["AAPL"], "window": 5}),
            "unknown-field",
        ),
        (
            "/api/v1/data/batch-fetch",
            serde_json::json!({"symbols": "AAPL"}),
            "invalid-symbols",
        ),
        (
            "/api/v1/ml/predict",
            serde_json::json!({"symbol": "AAPL", "features": features, "date": after}),
            "invalid-date",
        ),
        (
            "/api/v1/ml/batch-predict",
            serde_json::json!({"rows": [{"symbol": "AAPL", "features": features, "date": after}]}),
            "invalid-rows.date",
        ),
        (
            "/api/v1/execution/cycle",
            serde_json::json!({"max_orders": 99}),
            "invalid-max_orders",
        ),
        (
            "/api/v1/execution/cycle",
            serde_json::json!({"universe": -1}),
            "invalid-universe",
        ),
    ];
    for (path, body, code) in cases {
        let key = if path.contains("/execution/") {
            "dev-trader-key"
        } else {
            viewer
        };
        let (status, answer) = post(key, path, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(code)),
            "{path} {body}: {answer}"
        );
    }

    let put_clock = |body: serde_json::Value| {
        let request = client()
            .put(url(&host, "/api/v1/data/clock"))
            .header("x-admin-token", "s3cret")
            .json(&body);
        async move {
            let resp = request.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    for (body, code) in [
        (
            serde_json::json!({"mode": "replay", "as_of": "2999-01-04"}),
            "invalid-as_of",
        ),
        (
            serde_json::json!({"mode": "live", "as_of": "2010-08-20"}),
            "invalid-as_of",
        ),
        (
            serde_json::json!({"mode": "replay", "as_of": "2010-08-20", "speed": 2}),
            "unknown-field",
        ),
        (serde_json::json!({"mode": "paused"}), "invalid-mode"),
        (serde_json::json!({"mode": "replay"}), "invalid-as_of"),
        (
            serde_json::json!({"mode": "replay", "as_of": "20-08-2010"}),
            "invalid-as_of",
        ),
    ] {
        let (status, answer) = put_clock(body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some(code)),
            "{body}: {answer}"
        );
    }
    let (_, unchanged) = get_json(&host, "/api/v1/data/clock").await;
    assert_eq!(
        unchanged["as_of"], clock["as_of"],
        "a refused clock changes nothing"
    );
    host.shutdown().await;
}
