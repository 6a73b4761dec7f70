//! A test component for runtime-host: one route per host capability, plus
//! routes that misbehave (trap, loop forever, exhaust memory) to show that a
//! guest fails alone.

// `#[http_component]` expands to the canonical-ABI export, which is unsafe code.
#![allow(unsafe_code)]

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;
use spin_sdk::{key_value, redis, variables};

#[http_component]
async fn handle(req: Request) -> Response {
    let path = path_below_route(&req);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let result = match (req.method(), segments.as_slice()) {
        (Method::Get, ["headers"]) => Ok(headers(&req)),
        (Method::Post, ["echo"]) => Ok(Response::new(200, req.body().to_vec())),
        (Method::Get, ["trap"]) => panic!("trap requested"),
        (Method::Get, ["loop"]) => spin_forever(),
        (Method::Get, ["oom"]) => Ok(exhaust_memory()),
        (Method::Get, ["var", name]) => Ok(variable(name)),
        (Method::Get, ["sleep"]) => Ok(sleep(&req)),
        (Method::Get, ["counter"]) => Ok(counter()),
        (_, ["kv", key]) => key_value_route(&req, key),
        (Method::Get, ["fetch"]) => Ok(fetch(&req).await),
        (Method::Get, ["recurse"]) => Ok(recurse().await),
        (Method::Get, ["redis"]) => redis_route(&req),
        (Method::Get, ["tcp"]) => Ok(tcp_echo(&req)),
        (Method::Post, ["sqlite"]) => sqlite_route(&req),
        (Method::Get, ["pg"]) => pg_route(&req),
        (Method::Get, ["pg-tls"]) => pg_tls_route(&req),
        (Method::Post, ["mqtt"]) => mqtt_route(&req),
        _ => Ok(text(404, format!("no route {path}"))),
    };
    result.unwrap_or_else(|e| text(500, format!("{e:#}")))
}

/// The path below `/guest`: from outside, Spin's `spin-path-info`; chained
/// (`http://guest.spin.internal/guest/...`, matched by Spin as against `/...`,
/// so with an empty `spin-component-route`), the whole path less `/guest`.
fn path_below_route(req: &Request) -> String {
    let header = |name| req.header(name).and_then(|v| v.as_str()).unwrap_or("");
    let path_info = header("spin-path-info");
    let path = if header("spin-component-route").is_empty() {
        path_info.strip_prefix("/guest").unwrap_or(path_info)
    } else {
        path_info
    };
    if path.is_empty() { "/" } else { path }.to_string()
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::new(status, body.into())
}

fn param(req: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn headers(req: &Request) -> Response {
    let map: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .filter(|(name, _)| name.starts_with("spin-") || *name == "traceparent" || *name == "host")
        .map(|(name, value)| (name.to_string(), value.as_str().unwrap_or_default().into()))
        .collect();
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(serde_json::Value::Object(map).to_string())
        .build()
}

fn spin_forever() -> ! {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn exhaust_memory() -> Response {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // 16 MiB at a time, touched so that it is really committed.
        let mut block = vec![0u8; 16 << 20];
        block[0] = 1;
        hoard.push(std::hint::black_box(block));
        if hoard.len() > 1024 {
            return text(200, "allocated 16 GiB without a limit");
        }
    }
}

fn variable(name: &str) -> Response {
    match variables::get(name) {
        Ok(value) => text(200, value),
        Err(e) => text(404, format!("{e}")),
    }
}

fn key_value_route(req: &Request, key: &str) -> anyhow::Result<Response> {
    let label = param(req, "store").unwrap_or_else(|| "default".into());
    let store = match key_value::Store::open(&label) {
        Ok(store) => store,
        Err(e) => return Ok(text(403, format!("{e}"))),
    };
    Ok(match req.method() {
        Method::Get => match store.get(key)? {
            Some(value) => Response::new(200, value),
            None => text(404, "no such key"),
        },
        Method::Put => {
            store.set(key, req.body())?;
            text(204, "")
        }
        Method::Delete => {
            store.delete(key)?;
            text(204, "")
        }
        _ => text(405, "method not allowed"),
    })
}

async fn fetch(req: &Request) -> Response {
    let Some(url) = param(req, "url") else {
        return text(400, "url is required");
    };
    match spin_sdk::http::send::<_, Response>(Request::get(url).build()).await {
        Ok(resp) => Response::new(*resp.status(), resp.into_body()),
        Err(e) => text(502, format!("outbound failed: {e}")),
    }
}

fn redis_route(req: &Request) -> anyhow::Result<Response> {
    let address = param(req, "address").unwrap_or_default();
    let key = param(req, "key").unwrap_or_else(|| "guest-counter".into());
    let conn = match redis::Connection::open(&address) {
        Ok(conn) => conn,
        Err(e) => return Ok(text(403, format!("{e}"))),
    };
    let count = conn.incr(&key)?;
    Ok(text(200, count.to_string()))
}

/// Spin's conformance `sqlite`: `forbidden` is refused, then in the database
/// `db` (default `default`) a row is inserted and the rows counted back.
fn sqlite_route(req: &Request) -> anyhow::Result<Response> {
    use spin_sdk::sqlite::{Connection, Error, Value};
    if !matches!(Connection::open("forbidden"), Err(Error::AccessDenied)) {
        return Ok(text(500, "`forbidden` was not refused"));
    }
    let label = param(req, "db").unwrap_or_else(|| "default".into());
    let conn = match Connection::open(&label) {
        Ok(conn) => conn,
        Err(e) => return Ok(text(403, format!("{e:?}"))),
    };
    conn.execute(
        "CREATE TABLE IF NOT EXISTS test_data(key TEXT NOT NULL, value TEXT NOT NULL)",
        &[],
    )?;
    conn.execute(
        "INSERT INTO test_data(key, value) VALUES(?, ?)",
        &[
            Value::Text("my_key".into()),
            Value::Text(String::from_utf8_lossy(req.body()).into_owned()),
        ],
    )?;
    let result = conn.execute(
        "SELECT key, value FROM test_data WHERE key = ?",
        &[Value::Text("my_key".into())],
    )?;
    let values: Vec<&str> = result
        .rows
        .iter()
        .filter_map(|row| row.get::<&str>(1))
        .collect();
    Ok(text(
        200,
        format!("{}:{}", result.columns.join(","), values.join(",")),
    ))
}

/// Connect to `address` over wasi:sockets, send `ping` and answer what comes back.
fn tcp_echo(req: &Request) -> Response {
    use std::io::{Read, Write};
    let Some(address) = param(req, "address") else {
        return text(400, "address is required");
    };
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(address.as_str())?;
        stream.write_all(b"ping")?;
        let mut echoed = [0u8; 4];
        stream.read_exact(&mut echoed)?;
        Ok(String::from_utf8_lossy(&echoed).into_owned())
    };
    match exchange() {
        Ok(echoed) => text(200, echoed),
        Err(e) => text(500, format!("{:?}: {e}", e.kind())),
    }
}

fn sleep(req: &Request) -> Response {
    let ms: u64 = param(req, "ms").and_then(|v| v.parse().ok()).unwrap_or(100);
    std::thread::sleep(std::time::Duration::from_millis(ms));
    text(200, format!("slept {ms} ms"))
}

/// How many requests this instance has served: 1 on every request when each
/// request gets a fresh instance, counting up when instances are reused.
fn counter() -> Response {
    static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SERVED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    text(200, n.to_string())
}

/// Call this same route on this same component: a chaining loop the host must cut.
async fn recurse() -> Response {
    let url = "http://guest.spin.internal/guest/recurse";
    match spin_sdk::http::send::<_, Response>(Request::get(url).build()).await {
        Ok(resp) => Response::new(*resp.status(), resp.into_body()),
        Err(e) => text(508, format!("chain cut: {e}")),
    }
}

/// Postgres through the three interface versions Spin offers. With `address`
/// (a connection string): 4.0.0 makes a table of every type it knows, writes
/// a row through parameters and reads it back; a statement on a missing table
/// fails; 3.0.0 and 2.0.0 run a parameterised query each. The answer is one
/// `column:type=value` line per column, then one line per check.
fn pg_route(req: &Request) -> anyhow::Result<Response> {
    use spin_sdk::pg4::{Connection, Interval, ParameterValue as P, RangeBoundKind};
    let Some(address) = param(req, "address") else {
        return Ok(text(400, "address is required"));
    };
    let conn = match Connection::open(&address) {
        Ok(conn) => conn,
        Err(e) => return Ok(text(403, format!("{e:?}"))),
    };
    conn.execute("DROP TABLE IF EXISTS guest_types", &[])?;
    conn.execute(
        "CREATE TABLE guest_types(b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, \
         t text, c char(6), bin bytea, d date, tm time, ts timestamp, tstz timestamptz, u uuid, \
         j jsonb, n numeric, r4 int4range, r8 int8range, rn numrange, a4 int4[], a8 int8[], \
         an numeric[], at text[], iv interval, nothing text, other inet)",
        &[],
    )?;
    let inserted = conn.execute(
        "INSERT INTO guest_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, '10.0.0.1')",
        &[
            P::Boolean(true),
            P::Int16(-2),
            P::Int32(7203),
            P::Int64(9_007_199_254_740_993),
            P::Floating32(0.5),
            P::Floating64(-1.25),
            P::Str("トヨタ".into()),
            P::Str("7203.T".into()),
            P::Binary(vec![0, 255]),
            P::Date((2026, 12, 2)),
            P::Time((15, 25, 0, 500_000_000)),
            P::Datetime((2026, 12, 2, 6, 25, 0, 0)),
            P::Timestamp(1_796_192_700),
            P::Uuid("12345678-1234-1234-1234-123456789abc".into()),
            P::Jsonb(br#"{"lot":100}"#.to_vec()),
            P::Decimal("2891.50".into()),
            P::RangeInt32((
                Some((9, RangeBoundKind::Exclusive)),
                Some((15, RangeBoundKind::Inclusive)),
            )),
            P::RangeInt64((Some((1, RangeBoundKind::Inclusive)), None)),
            P::RangeDecimal((None, Some(("0.5".into(), RangeBoundKind::Exclusive)))),
            P::ArrayInt32(vec![Some(1), None, Some(3)]),
            P::ArrayInt64(vec![Some(-4)]),
            P::ArrayDecimal(vec![Some("1.10".into()), None]),
            P::ArrayStr(vec![Some("AAPL".into()), None]),
            P::Interval(Interval {
                micros: 1_500_000,
                days: 2,
                months: 1,
            }),
            P::DbNull,
        ],
    )?;
    let rows = conn.query("SELECT * FROM guest_types", &[])?;
    let mut lines: Vec<String> = rows
        .columns
        .iter()
        .zip(&rows.rows[0])
        .map(|(column, value)| format!("{}:{:?}={:?}", column.name, column.data_type, value))
        .collect();
    lines.push(format!("inserted={inserted}"));
    match conn.query("SELECT * FROM no_such_table", &[]) {
        Ok(_) => lines.push("missing-table=answered".into()),
        Err(e) => lines.push(format!("missing-table={e:?}")),
    }
    match conn.execute("SELECT $1::int4", &[P::Str("not a number".into())]) {
        Ok(_) => lines.push("wrong-type=accepted".into()),
        Err(e) => lines.push(format!("wrong-type={e:?}")),
    }
    let v3 = spin_sdk::pg3::Connection::open(&address)?;
    let answer = v3.query(
        "SELECT $1::int4 + 1 AS n, '2026-12-02'::date AS d",
        &[spin_sdk::pg3::ParameterValue::Int32(41)],
    )?;
    lines.push(format!("v3={:?}", answer.rows[0]));
    let v2 = spin_sdk::pg::Connection::open(&address)?;
    let answer = v2.query(
        "SELECT $1::int8 * 2 AS n",
        &[spin_sdk::pg::ParameterValue::Int64(21)],
    )?;
    lines.push(format!("v2={:?}", answer.rows[0]));
    let unsigned = v2.query("SELECT $1", &[spin_sdk::pg::ParameterValue::Uint8(1)]);
    lines.push(format!("v2-unsigned={:?}", unsigned.err()));
    Ok(text(200, lines.join("\n")))
}

/// Publish the body to `topic` on the broker at `address` (an
/// `mqtt://host:port?client_id=...` URL) with `qos` 0, 1 or 2.
/// Whether this session with the server is encrypted, as the server sees it.
fn pg_tls_route(req: &Request) -> anyhow::Result<Response> {
    use spin_sdk::pg4::{Connection, DbValue};
    let Some(address) = param(req, "address") else {
        return Ok(text(400, "address is required"));
    };
    let conn = match Connection::open(&address) {
        Ok(conn) => conn,
        Err(e) => return Ok(text(403, format!("{e:?}"))),
    };
    let rows = conn.query(
        "SELECT ssl, coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )?;
    let session = rows.rows.first().map(|row| (&row[0], &row[1]));
    Ok(match session {
        Some((DbValue::Boolean(ssl), DbValue::Str(version))) => {
            text(200, format!("ssl={ssl} {version}"))
        }
        other => text(500, format!("unexpected {other:?}")),
    })
}

fn mqtt_route(req: &Request) -> anyhow::Result<Response> {
    use spin_sdk::mqtt::{Connection, Qos};
    let (Some(address), Some(topic)) = (param(req, "address"), param(req, "topic")) else {
        return Ok(text(400, "address and topic are required"));
    };
    let qos = match param(req, "qos").as_deref() {
        Some("0") => Qos::AtMostOnce,
        Some("1") | None => Qos::AtLeastOnce,
        Some("2") => Qos::ExactlyOnce,
        Some(other) => return Ok(text(400, format!("qos {other} is not 0, 1 or 2"))),
    };
    let user = param(req, "user").unwrap_or_default();
    let password = param(req, "password").unwrap_or_default();
    let conn = match Connection::open(&address, &user, &password, 30) {
        Ok(conn) => conn,
        Err(e) => return Ok(text(403, format!("{e:?}"))),
    };
    match conn.publish(&topic, req.body(), qos) {
        Ok(()) => Ok(text(200, "published")),
        Err(e) => Ok(text(502, format!("{e:?}"))),
    }
}
