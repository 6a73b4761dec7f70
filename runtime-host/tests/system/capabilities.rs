//! The host's Spin capabilities, exercised by a real component: routes and
//! Spin's headers, variables, key-value (SQLite and Redis), spin:redis,
//! outbound HTTP and its allow-list, trace propagation.

use crate::common::*;

#[tokio::test]
async fn routes_requests_and_sets_spin_headers() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "", "");
    let host = start(&settings(&manifest, dir.path())).await;

    let resp = client()
        .get(url(&host, "/guest/headers?x=1"))
        .header("spin-path-info", "/spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(headers["spin-path-info"], "/headers");
    assert_eq!(headers["spin-matched-route"], "/guest/...");
    assert_eq!(headers["spin-component-route"], "/guest");
    assert_eq!(
        headers["spin-full-url"],
        format!("http://{}/guest/headers?x=1", host.addr)
    );
    assert!(
        headers["spin-client-addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );

    let (status, body) = get(&host, "/elsewhere").await;
    assert_eq!(status, 404);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["code"], "not-found");
    host.shutdown().await;
}

#[tokio::test]
async fn variables_come_from_manifest_environment_and_cli() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        "[component.guest.variables]\ngreeting = \"{{ greeting }}, {{ name }}\"\nplain = \"fixed\"",
        "[variables]\ngreeting = { default = \"hello\" }\nname = { required = true }",
    );
    let mut settings = settings(&manifest, dir.path());
    let err = crate::common::try_start(&settings).await.unwrap_err();
    assert!(format!("{err:#}").contains("SPIN_VARIABLE_NAME"), "{err:#}");

    settings
        .env
        .insert("SPIN_VARIABLE_NAME".into(), "env".into());
    let host = start(&settings).await;
    assert_eq!(
        get(&host, "/guest/var/greeting").await,
        (200, "hello, env".into())
    );
    assert_eq!(get(&host, "/guest/var/plain").await, (200, "fixed".into()));
    // An application variable the component did not declare is not visible to it.
    assert_eq!(get(&host, "/guest/var/name").await.0, 404);
    host.shutdown().await;

    settings.variables.push(("name".into(), "cli".into()));
    let host = start(&settings).await;
    assert_eq!(
        get(&host, "/guest/var/greeting").await,
        (200, "hello, cli".into())
    );
    host.shutdown().await;
}

#[tokio::test]
async fn key_value_persists_across_host_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "key_value_stores = [\"default\"]", "");
    let settings = settings(&manifest, &dir.path().join("state"));

    let host = start(&settings).await;
    let resp = client()
        .put(url(&host, "/guest/kv/order-1"))
        .body("accepted")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        get(&host, "/guest/kv/order-1").await,
        (200, "accepted".into())
    );
    host.shutdown().await;

    assert!(dir.path().join("state/sqlite_key_value.db").exists());
    let host = start(&settings).await;
    assert_eq!(
        get(&host, "/guest/kv/order-1").await,
        (200, "accepted".into())
    );
    assert_eq!(get(&host, "/guest/kv/absent").await.0, 404);
    // A label the component was not granted is refused.
    let (status, body) = get(&host, "/guest/kv/x?store=other").await;
    assert_eq!(status, 403, "{body}");
    host.shutdown().await;
}

#[tokio::test]
async fn key_value_on_redis_from_runtime_config() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), "key_value_stores = [\"default\"]", "");
    let runtime_config = redis_runtime_config(dir.path(), &redis);
    let mut settings = settings(&manifest, dir.path());
    settings.runtime_config = Some(runtime_config);
    let host = start(&settings).await;

    let resp = client()
        .put(url(&host, "/guest/kv/fill-7"))
        .body("100@2501")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        get(&host, "/guest/kv/fill-7").await,
        (200, "100@2501".into())
    );

    // The value is really in Redis, not in a local store.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stored: Option<String> = redis::AsyncCommands::get(&mut conn, "fill-7")
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("100@2501"));
    assert!(!dir.path().join("sqlite_key_value.db").exists());
    host.shutdown().await;
}

#[tokio::test]
async fn spin_redis_is_checked_against_allowed_hosts() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        &format!(
            "allowed_outbound_hosts = [\"redis://127.0.0.1:{}\"]",
            redis.port
        ),
        "",
    );
    let host = start(&settings(&manifest, dir.path())).await;
    let path = format!("/guest/redis?address={}&key=hits", redis.url());
    assert_eq!(get(&host, &path).await, (200, "1".into()));
    assert_eq!(get(&host, &path).await, (200, "2".into()));

    let other = RedisServer::start();
    let denied = format!("/guest/redis?address={}&key=hits", other.url());
    assert_eq!(get(&host, &denied).await.0, 403);
    let client = redis::Client::open(other.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hits: Option<i64> = redis::AsyncCommands::get(&mut conn, "hits").await.unwrap();
    assert_eq!(
        hits, None,
        "nothing reached the server that was not granted"
    );
    let metrics = metrics(&host).await;
    assert_eq!(
        metric_value(
            &metrics,
            "runtime_host_outbound_denied_total{component=\"guest\",kind=\"redis\"}"
        ),
        1.0
    );
    host.shutdown().await;
}

#[tokio::test]
async fn outbound_http_is_allowed_only_to_granted_hosts_and_carries_the_trace() {
    let allowed = Recorder::start().await;
    let forbidden = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
            allowed.addr.port()
        ),
        "",
    );
    let host = start(&settings(&manifest, dir.path())).await;

    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = client()
        .get(url(
            &host,
            &format!("/guest/fetch?url=http://{}/ping", allowed.addr),
        ))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "pong");
    let seen = allowed.seen.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/ping");
    let propagated = &seen.headers["traceparent"];
    assert!(
        propagated.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "trace id kept: {propagated}"
    );
    assert!(
        !propagated.contains("00f067aa0ba902b7"),
        "a new span id: {propagated}"
    );

    let (status, body) = get(
        &host,
        &format!("/guest/fetch?url=http://{}/ping", forbidden.addr),
    )
    .await;
    assert_eq!(status, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert_eq!(
        forbidden.count(),
        0,
        "nothing was sent to a host that was not granted"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_chaining_loop_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        "allowed_outbound_hosts = [\"http://guest.spin.internal\"]",
        "",
    );
    let host = start(&settings(&manifest, dir.path())).await;
    let (status, body) = get(&host, "/guest/recurse").await;
    assert_eq!(status, 508, "{body}");
    assert!(body.contains("LoopDetected"), "{body}");
    let metrics = metrics(&host).await;
    // The outside request plus MAX_CHAIN_DEPTH chained ones, and no more.
    let served = metric_value(
        &metrics,
        "runtime_host_http_requests_total{component=\"guest\",status=\"508\"}",
    );
    assert_eq!(
        served,
        f64::from(runtime_host::http_outbound::MAX_CHAIN_DEPTH + 1)
    );
    host.shutdown().await;
}
