//! A guest that traps, loops or exhausts memory fails its own request and
//! nothing else; instances are fresh per request unless reuse is asked for;
//! the admin port reports it all; shutdown finishes in-flight requests.

use std::time::Duration;

use crate::common::*;

async fn expect_failure(host: &runtime_host::RunningHost, path: &str, code: &str) {
    let (status, body) = get(host, path).await;
    assert_eq!(status, 500, "{path}: {body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], code, "{path}: {body}");
    // The host keeps serving.
    assert_eq!(get(host, "/guest/counter").await.0, 200, "after {path}");
}

#[tokio::test]
async fn misbehaving_guests_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let mut settings = settings(&manifest, dir.path());
    settings.request_timeout = Duration::from_secs(1);
    let host = start(&settings).await;

    // A healthy request in flight while the others misbehave.
    let slow = tokio::spawn({
        let url = url(&host, "/guest/sleep?ms=300");
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    expect_failure(&host, "/guest/trap", "component-failed").await;
    expect_failure(&host, "/guest/oom", "component-failed").await;
    expect_failure(&host, "/guest/loop", "component-timeout").await;
    assert_eq!(slow.await.unwrap(), 200);

    let metrics = metrics(&host).await;
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_guest_traps_total{component=\"guest\"}"
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_guest_timeouts_total{component=\"guest\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_http_requests_total{component=\"guest\",status=\"500\"}"
        ),
        3.0
    );
    host.shutdown().await;
}

#[tokio::test]
async fn fresh_instance_per_request_unless_reuse_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let mut settings = settings(&manifest, dir.path());
    let host = start(&settings).await;
    for _ in 0..3 {
        assert_eq!(get(&host, "/guest/counter").await, (200, "1".into()));
    }
    host.shutdown().await;

    settings.max_instance_reuse_count = 3;
    let host = start(&settings).await;
    let mut served = Vec::new();
    for _ in 0..4 {
        served.push(get(&host, "/guest/counter").await.1);
        // An instance goes back to the pool when its handler returns, just after
        // the response is sent: give it that moment.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(served, ["1", "2", "3", "1"]);
    host.shutdown().await;
}

#[tokio::test]
async fn admin_port_reports_health_readiness_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let host = start(&settings(&manifest, dir.path())).await;
    let admin = host.admin_addr.unwrap();
    for path in ["/healthz", "/readyz"] {
        let resp = client()
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    get(&host, "/guest/counter").await;
    let text = metrics(&host).await;
    assert_eq!(
        metric_value(
            &text,
            "runtime_host_http_requests_total{component=\"guest\",status=\"200\"}"
        ),
        1.0
    );
    assert!(
        metric_value(
            &text,
            "runtime_host_instantiation_duration_seconds_count{component=\"guest\"}"
        ) >= 1.0
    );
    assert!(text.contains("runtime_host_http_request_duration_seconds_bucket{component=\"guest\""));
    assert!(text.contains("runtime_host_http_requests_in_flight{component=\"guest\"} 0"));

    promtool_check(&text);
    host.shutdown().await;
}

#[tokio::test]
async fn compiled_components_are_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let mut settings = settings(&manifest, dir.path());
    settings.cache_dir = Some(dir.path().join("compiled"));
    let first = start(&settings).await;
    let text = metrics(&first).await;
    assert!(
        text.contains("runtime_host_component_load_seconds{cache=\"miss\",component=\"guest\"}"),
        "{text}"
    );
    first.shutdown().await;
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("compiled"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);

    let second = start(&settings).await;
    let text = metrics(&second).await;
    assert!(
        text.contains("runtime_host_component_load_seconds{cache=\"hit\",component=\"guest\"}"),
        "{text}"
    );
    assert_eq!(get(&second, "/guest/counter").await.0, 200);
    second.shutdown().await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let port = free_port();
    let admin_port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_runtime-host"))
        .args(["up", "-f"])
        .arg(&manifest)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--max-instances", "20"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client()
        .get(format!("{base}/guest/counter"))
        .send()
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "host did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let in_flight = tokio::spawn({
        let url = format!("{base}/guest/sleep?ms=700");
        async move {
            let resp = client().get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(in_flight.await.unwrap(), (200, "slept 700 ms".into()));

    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        client()
            .get(format!("{base}/guest/counter"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_guest_waiting_in_a_host_call_is_stopped_by_the_backstop_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let mut settings = settings(&manifest, dir.path());
    settings.request_timeout = Duration::from_secs(1);
    let host = start(&settings).await;
    // Sleeping is a host call (a WASI poll): no Wasm runs, so no epoch deadline fires.
    let started = std::time::Instant::now();
    let (status, body) = get(&host, "/guest/sleep?ms=5000").await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("component-timeout"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stopped near the deadline"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = metrics(&host).await;
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_guest_timeouts_total{component=\"guest\"}"
        ),
        1.0
    );
    host.shutdown().await;
}

/// A pool of four instances, two components: callers of `front`, each
/// waiting on a chained call to `back`, can take only front's share of the
/// pool (two), so `back` always has instances left; the other callers wait
/// briefly for a slot of front's and every call completes. With one shared
/// pool, four callers would hold every slot and their chained calls fail.
#[tokio::test]
async fn callers_waiting_on_a_chained_callee_cannot_take_every_instance() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_app(
        dir.path(),
        "chain",
        r#"[[trigger.http]]
route = "/guest/..."
component = "front"

[[trigger.http]]
route = { private = true }
component = "back"

[component.front]
source = "{guest}"
allowed_outbound_hosts = ["http://back.spin.internal"]

[component.back]
source = "{guest}"
"#,
    );
    let mut settings = settings(&manifest, dir.path());
    settings.engine.max_instances = 4;
    let host = start(&settings).await;

    let calls: Vec<_> = (0..6)
        .map(|_| {
            let url = url(
                &host,
                "/guest/fetch?url=http://back.spin.internal/guest/sleep?ms=500",
            );
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let resp = client().get(url).send().await.unwrap();
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap(), started.elapsed())
            })
        })
        .collect();
    let mut took = Vec::new();
    for call in calls {
        let (status, body, elapsed) = call.await.unwrap();
        assert_eq!((status, body.as_str()), (200, "slept 500 ms"));
        took.push(elapsed);
    }
    took.sort();
    // Two at a time: three rounds of half a second.
    assert!(took[1] < Duration::from_millis(1000), "{took:?}");
    assert!(
        took[5] >= Duration::from_millis(1400),
        "more than two ran at once: {took:?}"
    );
    assert!(took[5] < Duration::from_secs(4), "{took:?}");

    // Past the wait for a slot, a caller gets 503 `overloaded`, not a hang.
    let long: Vec<_> = (0..6)
        .map(|_| {
            let url = url(
                &host,
                "/guest/fetch?url=http://back.spin.internal/guest/sleep?ms=1500",
            );
            tokio::spawn(async move {
                let resp = client().get(url).send().await.unwrap();
                resp.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for call in long {
        statuses.push(call.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 503, 503], "{statuses:?}");
    host.shutdown().await;
}
