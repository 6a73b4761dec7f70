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
