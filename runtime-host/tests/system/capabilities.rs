//! The host's Spin capabilities, exercised by a real component: routes and
//! Spin's headers, variables, key-value (SQLite and Redis), spin:redis,
//! outbound HTTP and its allow-list, trace propagation.

use crate::common::*;
use std::time::Duration;

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

/// A request chained through `http://<id>.spin.internal` carries exactly the
/// `spin-*` headers `spin up` gives it: Spin routes it synthetically, as
/// against the route `/...`, so the path info is the whole path, the
/// component route is empty, the client is `0.0.0.0:0`, and the full URL
/// names `localhost` (Spin's outbound HTTP drops the `Host` header).
#[tokio::test]
async fn chained_requests_carry_spins_synthetic_route_headers() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        "allowed_outbound_hosts = [\"http://guest.spin.internal\"]",
        "",
    );
    let host = start(&settings(&manifest, dir.path())).await;
    let target = "http://guest.spin.internal/guest/headers?x=1%26y=2";
    let (status, body) = get(&host, &format!("/guest/fetch?url={target}")).await;
    assert_eq!(status, 200, "{body}");
    let headers: serde_json::Value = serde_json::from_str(&body).unwrap();
    let spin: std::collections::BTreeMap<String, String> = headers
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("spin-"))
        .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_string()))
        .collect();
    let expected: std::collections::BTreeMap<String, String> = [
        ("spin-full-url", "http://localhost/guest/headers?x=1&y=2"),
        ("spin-path-info", "/guest/headers"),
        ("spin-matched-route", "/..."),
        ("spin-raw-component-route", "/..."),
        ("spin-component-route", ""),
        ("spin-base-path", "/"),
        ("spin-client-addr", "0.0.0.0:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(spin, expected);
    assert!(headers.get("host").is_none(), "{headers}");

    // The same component from outside: the route that matched, as before.
    let (status, body) = get(&host, "/guest/headers").await;
    assert_eq!(status, 200);
    let direct: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(direct["spin-path-info"], "/headers");
    assert_eq!(direct["spin-raw-component-route"], "/guest/...");
    assert_eq!(direct["spin-component-route"], "/guest");
    assert_eq!(direct["spin-base-path"], "/");
    host.shutdown().await;
}

/// Spin's conformance `request-shape`: `:name` segments match one segment
/// each and reach the component as `spin-path-match-<name>`.
#[tokio::test]
async fn route_parameters_are_matched_and_passed_as_headers() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_app(
        dir.path(),
        "request-shape",
        r#"[[trigger.http]]
route = "/base/:path_segment/:path_end/..."
component = "guest"

[component.guest]
source = "{guest}"
"#,
    );
    let host = start(&settings(&manifest, dir.path())).await;
    let resp = client()
        .get(url(&host, "/base/path/end/headers?key=value"))
        .header("host", "example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let headers: serde_json::Value = resp.json().await.unwrap();
    let expected = [
        (
            "spin-raw-component-route",
            "/base/:path_segment/:path_end/...",
        ),
        ("spin-matched-route", "/base/:path_segment/:path_end/..."),
        ("spin-component-route", "/base/:path_segment/:path_end"),
        (
            "spin-full-url",
            "http://example.com/base/path/end/headers?key=value",
        ),
        ("spin-path-info", "/headers"),
        ("spin-base-path", "/"),
        ("spin-path-match-path-segment", "path"),
        ("spin-path-match-path-end", "end"),
    ];
    for (name, value) in expected {
        assert_eq!(headers[name], value, "{name}: {headers}");
    }
    // One segment short of the route: no match.
    assert_eq!(get(&host, "/base/path").await.0, 404);
    // Spin's own routes answer whatever the manifest routes.
    assert_eq!(
        get(&host, "/.well-known/spin/health").await,
        (200, "OK".into())
    );
    let (status, info) = get_json(&host, "/.well-known/spin/info").await;
    assert_eq!(status, 200);
    assert_eq!(info["name"], "request-shape");
    assert_eq!(info["version"], "0.1.0");
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

/// A TCP echo server on loopback, answering every connection once.
async fn tcp_echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4];
                if stream.read_exact(&mut buf).await.is_ok() {
                    let _ = stream.write_all(&buf).await;
                }
            });
        }
    });
    port
}

/// Spin's conformance `tcp-sockets*`: wasi:sockets connections are granted
/// by `allowed_outbound_hosts`, an address, a port or an IP range at a time;
/// anything else is `access-denied` before a packet leaves.
#[tokio::test]
async fn tcp_sockets_reach_only_granted_addresses_and_ranges() {
    let port = tcp_echo_server().await;
    let cases = [
        (format!("*://127.0.0.1:{port}"), true),
        (format!("tcp://127.0.0.0/24:{port}"), true),
        // The conformance suite's variable form: the range from variables.
        (
            "*://{{ addr_prefix }}/{{ prefix_len }}:{{ port }}".to_string(),
            true,
        ),
        (format!("*://127.0.0.2:{port}"), false),
        (format!("*://127.0.0.1:{}", port.wrapping_add(1)), false),
        (format!("*://10.0.0.0/8:{port}"), false),
    ];
    for (grant, allowed) in cases {
        let dir = tempfile::tempdir().unwrap();
        let manifest = guest_manifest(
            dir.path(),
            &format!("allowed_outbound_hosts = [\"{grant}\"]"),
            &format!(
                "[variables]\naddr_prefix = {{ default = \"127.0.0.1\" }}\n\
                 prefix_len = {{ default = \"24\" }}\nport = {{ default = \"{port}\" }}"
            ),
        );
        let host = start(&settings(&manifest, dir.path())).await;
        let (status, body) = get(&host, &format!("/guest/tcp?address=127.0.0.1:{port}")).await;
        if allowed {
            assert_eq!((status, body.as_str()), (200, "ping"), "{grant}");
        } else {
            assert_eq!(status, 500, "{grant}: {body}");
            assert!(body.starts_with("PermissionDenied"), "{grant}: {body}");
            let metrics = metrics(&host).await;
            assert_eq!(
                metric_value(
                    &metrics,
                    "runtime_host_outbound_denied_total{component=\"guest\",kind=\"socket\"}"
                ),
                1.0,
                "{grant}"
            );
        }
        host.shutdown().await;
    }
    // A range without a port is refused at start, as by Spin.
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        "allowed_outbound_hosts = [\"*://127.0.0.0/24\"]",
        "",
    );
    let err = crate::common::try_start(&settings(&manifest, dir.path()))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("needs a port"), "{err:#}");
}

/// Spin's conformance `sqlite` and `sqlite-no-permission`: the `default`
/// database is a file in the state directory that outlives the host, other
/// labels come from the runtime config, and an ungranted label is
/// `AccessDenied`.
#[tokio::test]
async fn sqlite_databases_are_granted_per_component_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        "[sqlite_database.scratch]\ntype = \"spin\"\n",
    )
    .unwrap();
    let manifest = guest_manifest(
        dir.path(),
        "sqlite_databases = [\"default\", \"scratch\"]",
        "",
    );
    let mut granted = settings(&manifest, &state);
    granted.runtime_config = Some(runtime_config.clone());
    let post = |host: &runtime_host::RunningHost, path: &str, body: &str| {
        let request = client().post(url(host, path)).body(body.to_string());
        async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };

    let host = start(&granted).await;
    assert_eq!(
        post(&host, "/guest/sqlite", "a").await,
        (200, "key,value:a".into())
    );
    assert_eq!(
        post(&host, "/guest/sqlite?db=scratch", "m").await,
        (200, "key,value:m".into())
    );
    host.shutdown().await;
    assert!(state.join("sqlite_db.db").exists());

    // The default file survives a restart; the in-memory `scratch` does not.
    let host = start(&granted).await;
    assert_eq!(
        post(&host, "/guest/sqlite", "b").await,
        (200, "key,value:a,b".into())
    );
    assert_eq!(
        post(&host, "/guest/sqlite?db=scratch", "n").await,
        (200, "key,value:n".into())
    );
    host.shutdown().await;

    // Not granted: AccessDenied, and nothing is created.
    let other = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(other.path(), "", "");
    let host = start(&settings(&manifest, &other.path().join("state"))).await;
    let (status, body) = post(&host, "/guest/sqlite", "x").await;
    assert_eq!((status, body.as_str()), (403, "Error::AccessDenied"));
    assert!(!other.path().join("state/sqlite_db.db").exists());
    host.shutdown().await;

    // A granted label the runtime config does not define stops the host at start.
    let manifest = guest_manifest(other.path(), "sqlite_databases = [\"ledger\"]", "");
    let err = crate::common::try_start(&settings(&manifest, other.path()))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("sqlite database `ledger`"),
        "{err:#}"
    );
}

/// Spin's conformance `postgres`, in this project's words: through
/// `spin:postgres@4.0.0` a component writes a row of every type the
/// interface knows and reads it back as Postgres stored it; 3.0.0 and
/// fermyon:spin 2.0.0 query too; wrong parameters and failed statements are
/// errors the component can read; an address not granted is refused.
#[tokio::test]
async fn postgres_round_trips_every_type_through_each_interface_version() {
    let pg = PostgresServer::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        &format!(
            "allowed_outbound_hosts = [\"postgres://127.0.0.1:{}\"]",
            pg.port
        ),
        "",
    );
    let host = start(&settings(&manifest, dir.path())).await;
    let address: String = url::form_urlencoded::byte_serialize(pg.address().as_bytes()).collect();
    let (status, body) = get(&host, &format!("/guest/pg?address={address}")).await;
    assert_eq!(status, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    let jsonb = format!("{:?}", br#"{"lot":100}"#.to_vec());
    let expected = [
        "b:DbDataType::Boolean=DbValue::Boolean(true)".to_string(),
        "i2:DbDataType::Int16=DbValue::Int16(-2)".into(),
        "i4:DbDataType::Int32=DbValue::Int32(7203)".into(),
        "i8:DbDataType::Int64=DbValue::Int64(9007199254740993)".into(),
        "f4:DbDataType::Floating32=DbValue::Floating32(0.5)".into(),
        "f8:DbDataType::Floating64=DbValue::Floating64(-1.25)".into(),
        "t:DbDataType::Str=DbValue::Str(\"トヨタ\")".into(),
        "c:DbDataType::Str=DbValue::Str(\"7203.T\")".into(),
        "bin:DbDataType::Binary=DbValue::Binary([0, 255])".into(),
        "d:DbDataType::Date=DbValue::Date((2026, 12, 2))".into(),
        "tm:DbDataType::Time=DbValue::Time((15, 25, 0, 500000000))".into(),
        "ts:DbDataType::Datetime=DbValue::Datetime((2026, 12, 2, 6, 25, 0, 0))".into(),
        "tstz:DbDataType::Datetime=DbValue::Datetime((2026, 12, 2, 6, 25, 0, 0))".into(),
        "u:DbDataType::Uuid=DbValue::Uuid(\"12345678-1234-1234-1234-123456789abc\")".into(),
        format!("j:DbDataType::Jsonb=DbValue::Jsonb({jsonb})"),
        "n:DbDataType::Decimal=DbValue::Decimal(\"2891.50\")".into(),
        // Postgres keeps discrete ranges as [lower, upper): (9, 15] is [10, 16).
        "r4:DbDataType::RangeInt32=DbValue::RangeInt32((Some((10, RangeBoundKind::Inclusive)), Some((16, RangeBoundKind::Exclusive))))".into(),
        "r8:DbDataType::RangeInt64=DbValue::RangeInt64((Some((1, RangeBoundKind::Inclusive)), None))".into(),
        "rn:DbDataType::RangeDecimal=DbValue::RangeDecimal((None, Some((\"0.5\", RangeBoundKind::Exclusive))))".into(),
        "a4:DbDataType::ArrayInt32=DbValue::ArrayInt32([Some(1), None, Some(3)])".into(),
        "a8:DbDataType::ArrayInt64=DbValue::ArrayInt64([Some(-4)])".into(),
        "an:DbDataType::ArrayDecimal=DbValue::ArrayDecimal([Some(\"1.10\"), None])".into(),
        "at:DbDataType::ArrayStr=DbValue::ArrayStr([Some(\"AAPL\"), None])".into(),
        "iv:DbDataType::Interval=DbValue::Interval(Interval { micros: 1500000, days: 2, months: 1 })".into(),
        "nothing:DbDataType::Str=DbValue::DbNull".into(),
        "inserted=1".into(),
        "v3=[DbValue::Int32(42), DbValue::Date((2026, 12, 2))]".into(),
        "v2=[DbValue::Int64(42)]".into(),
        "v2-unsigned=Some(Error::BadParameter(\"Postgres does not support unsigned integers\"))".into(),
    ];
    for line in &expected {
        assert!(
            lines.contains(&line.as_str()),
            "missing {line}\nin:\n{body}"
        );
    }
    let other = lines.iter().find(|l| l.starts_with("other:")).unwrap();
    assert!(
        other.starts_with("other:DbDataType::Other(\"inet\")=DbValue::Unsupported(["),
        "{other}"
    );
    let missing = lines
        .iter()
        .find(|l| l.starts_with("missing-table="))
        .unwrap();
    assert!(
        missing.contains("QueryFailed(QueryError::DbError") && missing.contains("\"42P01\""),
        "undefined_table, as Postgres coded it: {missing}"
    );
    let wrong = lines.iter().find(|l| l.starts_with("wrong-type=")).unwrap();
    assert!(
        wrong.starts_with("wrong-type=Error::BadParameter(\"parameter $1 (int4)"),
        "{wrong}"
    );

    // The row is in the database, as any other client sees it.
    let (client, connection) = tokio_postgres::connect(&pg.address(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT i4, c, n::text FROM guest_types", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 7203);
    assert_eq!(row.get::<_, String>(1), "7203.T");
    assert_eq!(row.get::<_, String>(2), "2891.50");
    host.shutdown().await;

    // Not granted: refused before any connection is made.
    let denied_dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(denied_dir.path(), "", "");
    let host = start(&settings(&manifest, denied_dir.path())).await;
    let (status, body) = get(&host, &format!("/guest/pg?address={address}")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        format!(
            "Error::ConnectionFailed(\"address postgres://127.0.0.1:{} is not permitted\")",
            pg.port
        )
    );
    host.shutdown().await;
}

/// Spin's conformance `outbound-mqtt` and `outbound-mqtt-no-permission`: a
/// component publishes to a granted broker with the credentials it gives, at
/// each quality of service, and a subscriber receives the messages; a wrong
/// password and an address not granted are errors.
#[tokio::test]
async fn mqtt_publishes_to_granted_brokers_with_the_components_credentials() {
    let broker = MosquittoServer::start();
    let mut received = mqtt_subscriber(&broker, "fills/#").await;

    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(
        dir.path(),
        &format!(
            "allowed_outbound_hosts = [\"mqtt://127.0.0.1:{}\"]",
            broker.port
        ),
        "",
    );
    let host = start(&settings(&manifest, dir.path())).await;
    let publish = |host: &runtime_host::RunningHost, query: String, body: &'static str| {
        let request = client()
            .post(url(host, &format!("/guest/mqtt?{query}")))
            .body(body);
        async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let address = |client_id: &str| {
        url::form_urlencoded::byte_serialize(
            format!("mqtt://127.0.0.1:{}?client_id={client_id}", broker.port).as_bytes(),
        )
        .collect::<String>()
    };
    for (qos, body) in [("0", "fill 1"), ("1", "fill 2"), ("2", "fill 3")] {
        let answer = publish(
            &host,
            format!(
                "address={}&topic=fills/7203.T&qos={qos}&user=desk&password=secret",
                address(&format!("guest-{qos}"))
            ),
            body,
        )
        .await;
        assert_eq!(answer, (200, "published".into()), "qos {qos}");
        let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), received.recv())
            .await
            .expect("the subscriber receives the message")
            .unwrap();
        assert_eq!(
            (topic.as_str(), payload.as_slice()),
            ("fills/7203.T", body.as_bytes())
        );
    }

    let (status, body) = publish(
        &host,
        format!(
            "address={}&topic=fills/7203.T&user=desk&password=wrong",
            address("guest-wrong")
        ),
        "never",
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.starts_with("Error::ConnectionFailed("), "{body}");
    host.shutdown().await;

    let denied_dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(denied_dir.path(), "", "");
    let host = start(&settings(&manifest, denied_dir.path())).await;
    let (status, body) = publish(
        &host,
        format!(
            "address={}&topic=fills/7203.T&user=desk&password=secret",
            address("guest-denied")
        ),
        "never",
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is not permitted"), "{body}");
    host.shutdown().await;
    assert!(
        received.try_recv().is_err(),
        "nothing was published by a refused or failed connection"
    );
}

/// TLS to Postgres and MQTT as Spin offers it: `sslmode` chooses (prefer,
/// the default, is TLS when offered; require is TLS or nothing; disable is
/// in the clear), `mqtts://` is TLS, and the server's certificate is always
/// verified: with the test CA trusted (`--tls-ca-file`) the session is
/// encrypted as the server sees it; without, it is refused.
#[tokio::test]
async fn postgres_and_mqtt_speak_tls_verified_against_the_hosts_roots() {
    let ca = TestCa::new();
    let pg = PostgresServer::start_with_tls(&ca);
    let broker = MosquittoServer::start_with_tls(&ca);
    let grants = format!(
        "allowed_outbound_hosts = [\"postgres://127.0.0.1:{}\", \"mqtts://127.0.0.1:{}\"]",
        pg.port, broker.tls_port
    );
    let pg_address = |sslmode: &str| {
        let address = format!("{} sslmode={sslmode}", pg.address());
        url::form_urlencoded::byte_serialize(address.as_bytes()).collect::<String>()
    };
    let mqtts = |client_id: &str| {
        let address = format!(
            "mqtts://127.0.0.1:{}?client_id={client_id}",
            broker.tls_port
        );
        url::form_urlencoded::byte_serialize(address.as_bytes()).collect::<String>()
    };

    // A subscriber on the broker's plain listener sees what arrives over TLS.
    let mut received = mqtt_subscriber(&broker, "fills/#").await;
    let publish = |host: &runtime_host::RunningHost, address: String| {
        let request = client()
            .post(url(
                host,
                &format!("/guest/mqtt?address={address}&topic=fills/tls&user=desk&password=secret"),
            ))
            .body("over tls");
        async move {
            let resp = request.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };

    // The test CA trusted: encrypted sessions.
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), &grants, "");
    let mut trusting = settings(&manifest, dir.path());
    trusting.tls_ca_file = Some(ca.cert.clone());
    let host = start(&trusting).await;
    for (sslmode, expected) in [("require", true), ("prefer", true), ("disable", false)] {
        let (status, body) = get(
            &host,
            &format!("/guest/pg-tls?address={}", pg_address(sslmode)),
        )
        .await;
        assert_eq!(status, 200, "sslmode={sslmode}: {body}");
        assert!(
            body.starts_with(&format!("ssl={expected}")),
            "sslmode={sslmode}: {body}"
        );
        if expected {
            assert!(body.contains("TLSv1."), "{body}");
        }
    }
    let (status, body) = publish(&host, mqtts("tls-guest")).await;
    assert_eq!((status, body.as_str()), (200, "published"));
    let (_, payload) = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the subscriber receives the message")
        .unwrap();
    assert_eq!(payload, b"over tls");
    host.shutdown().await;

    // Not trusted (the system's roots only): the certificate is refused,
    // and saying so; nothing falls back to the clear.
    let dir = tempfile::tempdir().unwrap();
    let manifest = guest_manifest(dir.path(), &grants, "");
    let host = start(&settings(&manifest, dir.path())).await;
    for sslmode in ["require", "prefer"] {
        let (status, body) = get(
            &host,
            &format!("/guest/pg-tls?address={}", pg_address(sslmode)),
        )
        .await;
        assert_eq!(status, 403, "sslmode={sslmode}: {body}");
        assert!(
            body.starts_with("Error::ConnectionFailed(") && body.contains("certificate"),
            "sslmode={sslmode}: {body}"
        );
    }
    let (status, body) = publish(&host, mqtts("untrusting-guest")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("ertificate"), "{body}");
    host.shutdown().await;
    assert!(
        received.try_recv().is_err(),
        "nothing was published over an unverified connection"
    );
}
