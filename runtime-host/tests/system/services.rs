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
