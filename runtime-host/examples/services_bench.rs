//! Service benchmark through the host (in-process, release build):
//! - data-service: latency of a full-history bar query and of the features;
//! - symbol-service: `recommend` over the default universe (525 symbols),
//!   on the bundled history, and on a live provider (a local fake Yahoo
//!   serving the bundled bars) with the cache cold, then warm.
//!
//! `make bench` runs it after the host benchmark.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::DateTime;
use market_data::History;
use runtime_host::AppSettings;
use tokio::net::TcpListener;

mod support;

use support::serve as start;

async fn timed_get(client: &reqwest::Client, url: &str) -> (Duration, usize) {
    let started = Instant::now();
    let resp = client.get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let body = resp.bytes().await.unwrap();
    (started.elapsed(), body.len())
}

async fn mean_latency(client: &reqwest::Client, url: &str, n: u32) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..n {
        total += timed_get(client, url).await.0;
    }
    total / n
}

/// A fake Yahoo chart API serving the bundled bars.
async fn fake_yahoo(history: Arc<History>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let history = history.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let body = yahoo_answer(
                            &history,
                            req.uri().path(),
                            req.uri().query().unwrap_or(""),
                        );
                        std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        )))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn yahoo_answer(history: &History, path: &str, query: &str) -> String {
    let symbol = path.rsplit('/').next().unwrap_or_default();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let day = |ts: i64| DateTime::from_timestamp(ts, 0).unwrap().date_naive();
    let (from, to) = (
        day(param("period1")),
        day(param("period2")) - chrono::Duration::days(1),
    );
    let Ok(bars) = history.bars(symbol, Some(from), Some(to)) else {
        return r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found"}}}"#.into();
    };
    let ts: Vec<String> = bars
        .iter()
        .map(|b| (b.date.and_hms_opt(14, 30, 0).unwrap().and_utc().timestamp()).to_string())
        .collect();
    let col =
        |f: &dyn Fn(&market_data::Bar) -> String| bars.iter().map(f).collect::<Vec<_>>().join(",");
    format!(
        r#"{{"chart":{{"result":[{{"meta":{{"symbol":"{symbol}","gmtoffset":-18000}},"timestamp":[{}],"indicators":{{"quote":[{{"open":[{}],"high":[{}],"low":[{}],"close":[{}],"volume":[{}]}}]}}}}],"error":null}}}}"#,
        ts.join(","),
        col(&|b| b.open.to_string()),
        col(&|b| b.high.to_string()),
        col(&|b| b.low.to_string()),
        col(&|b| b.close.to_string()),
        col(&|b| b.volume.to_string()),
    )
}

fn settings(state: &Path) -> AppSettings {
    let mut settings = support::settings(state);
    settings.components = vec!["data-service".into(), "symbol-service".into()];
    settings.request_timeout = Duration::from_secs(120);
    settings
}

#[tokio::main]
async fn main() {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let state = tempfile::tempdir().unwrap();

    // 1. data-service answers (indicator throughput in Wasm: the indicators_bench example).
    let host = start(&settings(state.path())).await;
    let base = format!("http://{}", host.addr);
    let plain = format!("{base}/api/v1/data/stocks/IBM?from=2000-01-01");
    let with = format!("{plain}&include_features=true");
    mean_latency(&client, &with, 3).await;
    let (t_plain, t_with) = (
        mean_latency(&client, &plain, 30).await,
        mean_latency(&client, &with, 30).await,
    );
    println!(
        "data-service GET /stocks/IBM (3,270 bars as JSON): {:.2} ms; with indicators: {:.2} ms",
        t_plain.as_secs_f64() * 1e3,
        t_with.as_secs_f64() * 1e3
    );
    let features = format!("{base}/api/v1/data/features/IBM");
    println!(
        "data-service GET /features/IBM: {:.2} ms",
        mean_latency(&client, &features, 30).await.as_secs_f64() * 1e3
    );
    // Throughput: 16 clients, 100 requests each.
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (client, features) = (client.clone(), features.clone());
            tokio::spawn(async move {
                for _ in 0..100 {
                    timed_get(&client, &features).await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    println!(
        "data-service GET /features/IBM, 16 clients: {:.0} requests/s",
        1600.0 / started.elapsed().as_secs_f64()
    );

    host.shutdown().await;

    // 2. recommend on the bundled history: symbol-service composed with
    // data-service (spin.toml, typed calls) and each in its own "pod"
    // (spin.pods.toml: the typed import over HTTP through data-remote).
    for (manifest, how) in [("spin.toml", "composed"), ("spin.pods.toml", "over HTTP")] {
        let pods = tempfile::tempdir().unwrap();
        let mut settings = settings(pods.path());
        settings.manifest = support::root().join(manifest);
        let host = start(&settings).await;
        let base = format!("http://{}", host.addr);
        let recommend = format!("{base}/api/v1/symbols/recommend?limit=10");
        let (first, _) = timed_get(&client, &recommend).await;
        let warm = mean_latency(&client, &recommend, 10).await;
        let thirty: Vec<String> = History::bundled()
            .unwrap()
            .series()
            .iter()
            .take(30)
            .map(|s| s.symbol.clone())
            .collect();
        let screen = format!("{base}/api/v1/symbols/screen");
        let body = serde_json::json!({ "universe": thirty, "limit": 10 });
        let mut total = Duration::ZERO;
        for _ in 0..20 {
            let started = Instant::now();
            let resp = client.post(&screen).json(&body).send().await.unwrap();
            assert!(resp.status().is_success(), "{screen}: {}", resp.status());
            resp.bytes().await.unwrap();
            total += started.elapsed();
        }
        println!(
            "symbol-service recommend, 525 symbols, bundled history, {how}: first {:.0} ms, \
             then {:.0} ms; screen of 30 symbols {:.1} ms",
            first.as_secs_f64() * 1e3,
            warm.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3 / 20.0,
        );
        host.shutdown().await;
    }

    // 3. recommend on a live provider through the cache.
    let history = Arc::new(History::bundled().unwrap());
    let yahoo = fake_yahoo(history).await;
    let state = tempfile::tempdir().unwrap();
    let mut live = settings(state.path());
    live.variables = vec![
        ("bar_source".into(), "yahoo".into()),
        ("yahoo_base_url".into(), format!("http://{yahoo}")),
        ("cache_ttl_daily_secs".into(), "3600".into()),
        ("admin_token".into(), "bench".into()),
    ];
    // The fake provider serves 2000-2013: replay the clock to 2010-08-20, as an operator would.
    let host = start(&live).await;
    let base = format!("http://{}", host.addr);
    let symbols: Vec<String> = History::bundled()
        .unwrap()
        .series()
        .iter()
        .map(|s| s.symbol.clone())
        .collect();
    let body = serde_json::json!({ "universe": symbols, "limit": 10 });
    let clock = client
        .put(format!("{base}/api/v1/data/clock"))
        .header("x-admin-token", "bench")
        .body(r#"{"mode":"replay","as_of":"2010-08-20"}"#)
        .send()
        .await
        .unwrap();
    assert!(clock.status().is_success());
    let screen = format!("{base}/api/v1/symbols/screen");
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let resp = client.post(&screen).json(&body).send().await.unwrap();
        assert!(resp.status().is_success());
        let _ = resp.bytes().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "symbol-service screen, 525 symbols, live provider (local fake Yahoo): cache cold {:.0} ms, warm {:.0} ms, {:.0} ms",
        times[0], times[1], times[2]
    );
    host.shutdown().await;
}
