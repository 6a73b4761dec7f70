//! data-service through the host: bundled history at the replay clock, bad
//! input, features, the clock's admin endpoints, and live providers (local
//! fakes in Yahoo's and Stooq's formats) through the cache on a real Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

fn project(state: &std::path::Path) -> runtime_host::AppSettings {
    let mut settings = settings(&workspace_root().join("spin.toml"), state);
    settings.components = vec!["data-service".into()];
    settings
}

#[tokio::test]
async fn serves_bundled_history_as_of_the_replay_clock() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let (status, body) = get_json(
        &host,
        "/api/v1/data/stocks/IBM?from=2010-06-01&to=2010-06-30",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "bundled");
    assert_eq!(
        body["bars"].as_array().unwrap().len(),
        22,
        "June 2010 had 22 NYSE sessions"
    );
    assert_eq!(body["bars"][0]["date"], "2010-06-01");
    assert!(
        body["bars"][0]["close"].as_str().unwrap().contains('.'),
        "prices are decimal strings"
    );

    // The default clock (replay_date 2010-08-20): a later `to` is refused,
    // and without one the bars end at the clock.
    let (status, body) = get_json(
        &host,
        "/api/v1/data/stocks/IBM?from=2010-08-01&to=2012-01-01",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-to")),
        "{body}"
    );
    let (_, body) = get_json(&host, "/api/v1/data/stocks/IBM?from=2010-08-01").await;
    assert_eq!(body["as_of"], "2010-08-20");
    assert_eq!(
        body["bars"].as_array().unwrap().last().unwrap()["date"],
        "2010-08-20"
    );

    let (status, body) = get_json(
        &host,
        "/api/v1/data/stocks/7203.T?include_features=true&from=2010-01-01",
    )
    .await;
    assert_eq!(status, 404, "no bundled Tokyo history: {body}");
    let (status, body) = get_json(
        &host,
        "/api/v1/data/stocks/MSFT?from=2010-01-01&include_features=true",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body["indicators"]["rsi_14"].as_f64().is_some(),
        "{}",
        body["indicators"]
    );

    let (status, body) = get_json(&host, "/api/v1/data/features/MSFT?date=2010-06-30").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["date"], "2010-06-30");
    assert_eq!(
        (body["interval"].as_str(), body["at"].as_str()),
        (Some("1d"), Some("2010-06-30T20:00:00Z")),
        "known at the day's close"
    );
    assert_eq!(
        body["names"].as_array().unwrap().len(),
        body["values"].as_array().unwrap().len()
    );
    daytrade_contract::wit_check::assert_projects(&body, "data", "feature-vector");
    let (status, body) = get_json(&host, "/api/v1/data/features/MSFT?interval=1h").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("unsupported-interval"))
    );
    host.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_stable_4xx_codes() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let cases = [
        ("/api/v1/data/stocks/not!a!symbol", 400, "invalid-symbol"),
        ("/api/v1/data/stocks/ZZZZ", 404, "unknown-symbol"),
        (
            "/api/v1/data/stocks/IBM?from=2010-06-30&to=2010-06-01",
            400,
            "invalid-range",
        ),
        (
            "/api/v1/data/stocks/IBM?from=1900-01-01",
            400,
            "invalid-range",
        ),
        (
            "/api/v1/data/stocks/IBM?from=yesterday",
            400,
            "invalid-from",
        ),
        (
            "/api/v1/data/stocks/IBM?interval=5m",
            400,
            "unsupported-interval",
        ),
        ("/api/v1/data/exchanges/lse", 404, "unknown-market"),
    ];
    for (path, status, code) in cases {
        let (got, body) = get_json(&host, path).await;
        assert_eq!(
            (got, body["code"].as_str().unwrap()),
            (status, code),
            "{path}: {body}"
        );
    }
    let too_many: Vec<String> = (0..51).map(|i| format!("S{i}")).collect();
    let resp = client()
        .post(url(&host, "/api/v1/data/batch-fetch"))
        .json(&serde_json::json!({ "symbols": too_many }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client()
        .post(url(&host, "/api/v1/data/batch-fetch"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid-json");
    host.shutdown().await;
}

#[tokio::test]
async fn batch_fetch_reports_each_symbol() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let resp = client()
        .post(url(&host, "/api/v1/data/batch-fetch"))
        .json(&serde_json::json!({ "symbols": ["IBM", "ZZZZ", "AAPL"], "from": "2010-08-01" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0]["ok"]["bars"].as_array().unwrap().len() > 10);
    assert_eq!(results[1]["error"]["code"], "unknown-symbol");
    assert_eq!(results[2]["symbol"], "AAPL");
    // The answer says the clock the bars were cut at.
    assert_eq!(body["clock"]["mode"], "replay");
    assert_eq!(body["clock"]["as_of"], "2010-08-20T20:00:00Z");
    assert_eq!(body["clock"]["date"], "2010-08-20");

    // Counted back from the clock: 10 days before 2010-08-20 (with `from`,
    // the earlier of the two).
    let fetch = |body: Value| {
        let request = client()
            .post(url(&host, "/api/v1/data/batch-fetch"))
            .json(&body);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let first_date = |answer: &Value| {
        answer["results"][0]["ok"]["bars"][0]["date"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let back = fetch(serde_json::json!({ "symbols": ["IBM"], "lookback_days": 10 })).await;
    assert_eq!(first_date(&back), "2010-08-10", "{back}");
    let both =
        fetch(serde_json::json!({ "symbols": ["IBM"], "from": "2010-08-16", "lookback_days": 10 }))
            .await;
    assert_eq!(first_date(&both), "2010-08-10");
    let older =
        fetch(serde_json::json!({ "symbols": ["IBM"], "from": "2010-08-02", "lookback_days": 10 }))
            .await;
    assert_eq!(first_date(&older), "2010-08-02");
    host.shutdown().await;
}

#[tokio::test]
async fn the_replay_clock_moves_only_for_admins() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    let host = start(&settings).await;
    let resp = client()
        .put(url(&host, "/api/v1/data/clock"))
        .body(r#"{"mode":"replay","as_of":"2010-03-31"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "no admin token configured");
    host.shutdown().await;

    settings
        .variables
        .push(("admin_token".into(), "s3cret".into()));
    let host = start(&settings).await;
    let put = |token: &'static str, body: &'static str| {
        client()
            .put(url(&host, "/api/v1/data/clock"))
            .header("x-admin-token", token)
            .body(body)
            .send()
    };
    assert_eq!(
        put("wrong", r#"{"mode":"replay","as_of":"2010-03-31"}"#)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        put("s3cret", r#"{"mode":"sideways"}"#)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        put("s3cret", r#"{"mode":"replay","as_of":"2010-03-31"}"#)
            .await
            .unwrap()
            .status(),
        200
    );
    let (_, clock) = get_json(&host, "/api/v1/data/clock").await;
    daytrade_contract::wit_check::assert_projects(&clock, "data", "market-clock");
    // A date is that trading day's close (16:00 EDT), shown in New York too.
    assert_eq!(clock["as_of"], "2010-03-31T20:00:00Z");
    assert_eq!(clock["local"], "2010-03-31T16:00:00-04:00");
    assert_eq!(
        (&clock["date"], &clock["interval"]),
        (&"2010-03-31".into(), &"1d".into())
    );
    assert_eq!(clock["session"], Value::Null);
    assert_eq!(clock["next_session"]["open"], "2010-04-01T13:30:00Z");
    let advance = |by: &'static str| {
        client()
            .post(url(&host, &format!("/api/v1/data/clock/advance{by}")))
            .header("x-admin-token", "s3cret")
            .send()
    };
    let clock: Value = advance("").await.unwrap().json().await.unwrap();
    assert_eq!(clock["as_of"], "2010-04-01T20:00:00Z");
    let (_, body) = get_json(&host, "/api/v1/data/stocks/IBM?from=2010-03-01").await;
    assert_eq!(
        body["bars"].as_array().unwrap().last().unwrap()["date"],
        "2010-04-01"
    );

    // An hourly clock inside a session: the day's bar is not complete, so
    // not seen; bars step on the hour from 09:30, sessions and days to their
    // close (2010-04-02 was Good Friday: the next day is Monday).
    let resp = put(
        "s3cret",
        r#"{"mode":"replay","as_of":"2010-04-05T13:30:00Z","interval":"1h"}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let clock: Value = resp.json().await.unwrap();
    assert_eq!(clock["date"], "2010-04-01");
    assert_eq!(clock["session"]["close"], "2010-04-05T20:00:00Z");
    let (_, body) = get_json(&host, "/api/v1/data/stocks/IBM?from=2010-03-01").await;
    assert_eq!(
        body["bars"].as_array().unwrap().last().unwrap()["date"],
        "2010-04-01"
    );
    let (status, refused) = get_json(&host, "/api/v1/data/stocks/IBM?to=2010-04-05").await;
    assert_eq!((status, &refused["code"]), (400, &"invalid-to".into()));
    let mut ends = Vec::new();
    for by in [
        "?by=bar",
        "?by=bar",
        "?by=session",
        "?by=bar",
        "?by=day",
        "?by=day",
    ] {
        let clock: Value = advance(by).await.unwrap().json().await.unwrap();
        ends.push(clock["local"].as_str().unwrap().to_string());
    }
    assert_eq!(
        ends,
        [
            "2010-04-05T10:30:00-04:00",
            "2010-04-05T11:30:00-04:00",
            "2010-04-05T16:00:00-04:00",
            "2010-04-06T10:30:00-04:00",
            "2010-04-06T16:00:00-04:00",
            "2010-04-07T16:00:00-04:00",
        ]
    );
    let (_, body) = get_json(&host, "/api/v1/data/stocks/IBM?from=2010-03-01").await;
    assert_eq!(
        body["bars"].as_array().unwrap().last().unwrap()["date"],
        "2010-04-07"
    );

    // Bad input changes nothing: an instant outside every session, an
    // unknown interval, market or step, a day the market does not trade.
    for (body, code) in [
        (
            r#"{"mode":"replay","as_of":"2010-04-05T12:00:00Z"}"#,
            "clock-outside-session",
        ),
        (
            r#"{"mode":"replay","as_of":"2010-04-03"}"#,
            "clock-outside-session",
        ),
        (
            r#"{"mode":"replay","as_of":"2010-04-05T14:00:00Z","interval":"2h"}"#,
            "unsupported-interval",
        ),
        (
            r#"{"mode":"replay","as_of":"2010-04-05","market":"lse"}"#,
            "invalid-market",
        ),
        (r#"{"mode":"replay","as_of":"yesterday"}"#, "invalid-as_of"),
        (r#"{"mode":"replay","as_of":"2999-01-04"}"#, "invalid-as_of"),
    ] {
        let resp = put("s3cret", body).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["code"], code, "{body}");
    }
    let resp = advance("?by=week").await.unwrap();
    assert_eq!(resp.status(), 400);
    let (_, unchanged) = get_json(&host, "/api/v1/data/clock").await;
    assert_eq!(unchanged["as_of"], "2010-04-07T20:00:00Z");

    // A TSE clock in the lunch break is refused; at the morning's close it
    // stands between sessions, and a bar step ends the afternoon's first hour.
    let resp = put(
        "s3cret",
        r#"{"mode":"replay","as_of":"2025-11-28T11:30:00+09:00","market":"tse","interval":"1h"}"#,
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let clock: Value = advance("?by=bar").await.unwrap().json().await.unwrap();
    assert_eq!(clock["local"], "2025-11-28T13:30:00+09:00");
    assert_eq!(clock["market"], "tse");
    host.shutdown().await;
}

/// The bundled EUR/USD hours on an hourly FX replay clock: each bar step
/// shows one more bar, none that has not closed; the day's bar once the FX
/// day is over; the intraday series listed apart from the daily universe.
#[tokio::test]
async fn intraday_history_steps_with_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings
        .variables
        .push(("admin_token".into(), "s3cret".into()));
    let host = start(&settings).await;
    put_clock(
        &format!("http://{}", host.addr),
        "s3cret",
        serde_json::json!({"mode": "replay", "as_of": "2017-03-15T10:00:00Z", "market": "fx", "interval": "1h"}),
    )
    .await;
    let hours = |body: &Value| -> Vec<i64> {
        body["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["ts"].as_i64().unwrap())
            .collect()
    };
    let path = "/api/v1/data/stocks/EURUSD=X?interval=1h&from=2017-03-15";
    let (status, before) = get_json(&host, path).await;
    assert_eq!(status, 200, "{before}");
    let before = hours(&before);
    assert_eq!(before.len(), 13);
    assert_eq!(
        *before.last().unwrap(),
        1_489_568_400,
        "09:00 UTC, closed at 10:00"
    );
    let resp = client()
        .post(url(&host, "/api/v1/data/clock/advance?by=bar"))
        .header("x-admin-token", "s3cret")
        .send()
        .await
        .unwrap();
    let clock: Value = resp.json().await.unwrap();
    assert_eq!(clock["as_of"], "2017-03-15T11:00:00Z");
    assert_eq!(clock["local"], "2017-03-15T07:00:00-04:00");
    let (_, after) = get_json(&host, path).await;
    assert_eq!(hours(&after).len(), 14);
    let (_, bar) = get_json(
        &host,
        "/api/v1/data/stocks/EURUSD=X?interval=1h&from=2017-03-15",
    )
    .await;
    assert_eq!(
        bar["bars"][0]["open"], "1.06044",
        "five decimals, as the source"
    );
    // Daily bars: up to the 14th, the last FX day that has closed.
    let (_, daily) = get_json(&host, "/api/v1/data/stocks/EURUSD=X?from=2017-03-01").await;
    assert_eq!(
        daily["bars"].as_array().unwrap().last().unwrap()["date"],
        "2017-03-14"
    );
    let (_, symbols) = get_json(&host, "/api/v1/data/symbols").await;
    assert_eq!(symbols["symbols"].as_array().unwrap().len(), 525);
    let intraday: Vec<&str> = symbols["intraday"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(intraday, ["BTC-USD", "EURUSD=X"]);
    // A batch in hours, each symbol alone: IBM has no hourly history.
    let resp = client()
        .post(url(&host, "/api/v1/data/batch-fetch"))
        .json(&serde_json::json!({"symbols": ["EURUSD=X", "IBM"], "interval": "1h", "from": "2017-03-15"}))
        .send()
        .await
        .unwrap();
    let batch: Value = resp.json().await.unwrap();
    assert_eq!(
        batch["results"][0]["ok"]["bars"].as_array().unwrap().len(),
        14
    );
    assert_eq!(batch["results"][1]["error"]["code"], "unsupported-interval");
    host.shutdown().await;
}

/// A Yahoo-format answer with one bar per day of June 2010 at 09:30 New York time.
fn yahoo_body() -> String {
    let days: Vec<i64> = (1..=25).map(|d| 1_275_399_000 + (d - 1) * 86_400).collect();
    let n = days.len();
    let col = |v: &str| vec![v; n].join(",");
    format!(
        r#"{{"chart":{{"result":[{{"meta":{{"currency":"USD","symbol":"IBM","gmtoffset":-14400}},"timestamp":[{}],"indicators":{{"quote":[{{"open":[{}],"high":[{}],"low":[{}],"close":[{}],"volume":[{}]}}]}}}}],"error":null}}}}"#,
        days.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(","),
        col("125.5"),
        col("126.0"),
        col("124.0"),
        col("125.75"),
        col("5000000")
    )
}

#[tokio::test]
async fn live_provider_through_the_cache_on_redis() {
    let redis = RedisServer::start();
    // The fake Yahoo answers with `status` (200 unless a test sets 429).
    let status = Arc::new(AtomicU16::new(200));
    let yahoo = Recorder::serve({
        let status = status.clone();
        Arc::new(move |target: &str| {
            if target.contains("/chart/ZZZZ") {
                return (404, r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found"}}}"#.into());
            }
            match status.load(Ordering::SeqCst) {
                200 => (200, yahoo_body()),
                code => (code, "Too Many Requests".into()),
            }
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let runtime_config = redis_runtime_config(dir.path(), &redis);
    let mut settings = project(dir.path());
    settings.runtime_config = Some(runtime_config);
    settings.variables.extend([
        ("bar_source".into(), "yahoo".into()),
        ("yahoo_base_url".into(), format!("http://{}", yahoo.addr)),
        ("cache_ttl_daily_secs".into(), "1".into()),
    ]);
    let host = start(&settings).await;
    let path = "/api/v1/data/stocks/IBM?from=2010-06-01&to=2010-06-20";

    let (status_code, first) = get_json(&host, path).await;
    assert_eq!(status_code, 200, "{first}");
    assert_eq!(
        (first["source"].as_str(), first["cached"].as_bool()),
        (Some("yahoo"), Some(false))
    );
    assert_eq!(
        first["bars"].as_array().unwrap().len(),
        20,
        "bars after `to` are dropped"
    );
    assert!(
        yahoo.seen.lock().unwrap()[0]
            .target
            .starts_with("/v8/finance/chart/IBM?interval=1d&period1=1275350400")
    );
    let (_, second) = get_json(&host, path).await;
    assert_eq!(second["cached"], true);
    assert_eq!(yahoo.count(), 1, "served from the cache");

    // The cache lives in Redis.
    let client_redis = redis::Client::open(redis.url()).unwrap();
    let mut conn = client_redis
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut conn, "data/cache/*")
        .await
        .unwrap();
    assert_eq!(keys, ["data/cache/yahoo/IBM/1d/2010-06-01/2010-06-20"]);

    // Past the TTL with the provider rate limiting: the stale entry is served and flagged.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    status.store(429, Ordering::SeqCst);
    let (code, third) = get_json(&host, path).await;
    assert_eq!(code, 200, "{third}");
    assert_eq!(
        (third["cached"].as_bool(), third["stale"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(yahoo.count(), 2);

    // Without a cached entry the provider's failure is ours to report.
    let (code, body) = get_json(
        &host,
        "/api/v1/data/stocks/MSFT?from=2010-06-01&to=2010-06-20",
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (503, Some("provider-rate-limited"))
    );
    let (code, body) = get_json(
        &host,
        "/api/v1/data/stocks/ZZZZ?from=2010-06-01&to=2010-06-20",
    )
    .await;
    assert_eq!((code, body["code"].as_str()), (404, Some("unknown-symbol")));

    // Provider recovered, TTL expired again: fresh data.
    status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, fourth) = get_json(&host, path).await;
    assert_eq!(
        (fourth["cached"].as_bool(), fourth["stale"].as_bool()),
        (Some(false), Some(false))
    );

    let (_, cache) = get_json(&host, "/api/v1/data/cache").await;
    assert_eq!(cache["entries"].as_array().unwrap().len(), 1);
    let resp = client()
        .delete(url(&host, "/api/v1/data/cache?symbol=IBM"))
        .send()
        .await
        .unwrap();
    let deleted: Value = resp.json().await.unwrap();
    assert_eq!(deleted["deleted"], 1);

    let metrics = client()
        .get(url(&host, "/api/v1/data/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("data_fetch_attempts_total{provider=\"yahoo\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("data_fetch_successes_total{provider=\"yahoo\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("data_cache_requests_total{result=\"stale_served\"} 1"),
        "{metrics}"
    );
    promtool_check(&metrics);
    host.shutdown().await;
}

#[tokio::test]
async fn stooq_unknown_symbol_and_outbound_grant() {
    let stooq = Recorder::serve(Arc::new(|_target: &str| (200, "No data".to_string()))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings.variables.extend([
        ("bar_source".into(), "stooq".into()),
        ("stooq_base_url".into(), format!("http://{}", stooq.addr)),
    ]);
    let host = start(&settings).await;
    let (code, body) = get_json(
        &host,
        "/api/v1/data/stocks/7203.T?from=2024-01-01&to=2024-01-31",
    )
    .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (404, Some("unknown-symbol")),
        "{body}"
    );
    assert_eq!(
        stooq.seen.lock().unwrap()[0].target,
        "/q/d/l/?s=7203.jp&i=d&d1=20240101&d2=20240131"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn intraday_bars_from_yahoo_carry_their_times() {
    let yahoo = Recorder::serve(Arc::new(|_target: &str| (200, yahoo_body()))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings.variables.extend([
        ("bar_source".into(), "yahoo".into()),
        ("yahoo_base_url".into(), format!("http://{}", yahoo.addr)),
    ]);
    let host = start(&settings).await;
    let (code, body) = get_json(
        &host,
        "/api/v1/data/stocks/IBM?interval=1h&from=2010-06-01&to=2010-06-03",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["interval"], "1h");
    assert!(
        yahoo.seen.lock().unwrap()[0]
            .target
            .contains("interval=60m&")
    );
    let bars = body["bars"].as_array().unwrap();
    assert_eq!(bars.len(), 3);
    assert_eq!(bars[0]["ts"], 1_275_399_000);
    host.shutdown().await;
}

/// An app of data-service and `data-client`, a component that calls every
/// function of the typed `data` import, satisfied by `dependency`.
fn client_app(dir: &std::path::Path, composed: bool) -> std::path::PathBuf {
    let wasm = |name: &str| component_wasm(name).display().to_string();
    let data_variables = r#"bar_source = "bundled"
replay_date = "2010-08-20"
yahoo_base_url = "https://query1.finance.yahoo.com"
stooq_base_url = "https://stooq.com"
cache_ttl_daily_secs = "900"
import_dir = "/import"
admin_token = "{{ admin_token }}""#;
    let client = if composed {
        format!(
            r#"key_value_stores = ["default"]
[component.client.variables]
{data_variables}
[component.client.dependencies]
"daytrade:platform/data" = {{ path = "{}", inherit_configuration = true }}"#,
            wasm("data-service")
        )
    } else {
        format!(
            r#"allowed_outbound_hosts = ["http://data-service.spin.internal"]
[component.client.variables]
data_service_url = "http://data-service.spin.internal"
admin_token = "{{{{ admin_token }}}}"
[component.client.dependencies]
"daytrade:platform/data" = {{ path = "{}", inherit_configuration = ["allowed_outbound_hosts", "variables"] }}"#,
            wasm("data-remote")
        )
    };
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "data-client"
[variables]
admin_token = {{ default = "s3cret" }}
[[trigger.http]]
route = "/api/v1/data/..."
component = "data-service"
[[trigger.http]]
route = "/client/..."
component = "client"
[component.data-service]
source = "{data}"
key_value_stores = ["default"]
[component.data-service.variables]
{data_variables}
[component.client]
source = "{client_wasm}"
{client}
"#,
        data = wasm("data-service"),
        client_wasm = wasm("data-client"),
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every function of `daytrade:platform/data` answers the same through the
/// HTTP adapter `data-remote` as composed with data-service: the values,
/// the errors (a symbol's own, a refused CSV) and the clock it moves.
#[tokio::test]
async fn the_http_adapter_answers_every_data_function_as_the_export_does() {
    let mut answers = Vec::new();
    for composed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let manifest = client_app(dir.path(), composed);
        let host = start(&settings(&manifest, &dir.path().join("state"))).await;
        let mut got = Vec::new();
        for function in [
            "bars",
            "bars-unknown",
            "batch-fetch",
            "closes",
            "features",
            "batch-features",
            "clock",
            "import-bars",
            "import-bad",
            "advance-clock",
            "symbols",
            "health",
            "version",
        ] {
            let (status, body) = get(&host, &format!("/client/{function}")).await;
            assert_eq!(status, 200, "{function}: {body}");
            got.push((function, body));
        }
        host.shutdown().await;
        answers.push(got);
    }
    let answer = |function: &str| &answers[0].iter().find(|(f, _)| *f == function).unwrap().1;
    assert!(
        answer("bars").starts_with("Ok(BarSeries { symbol: \"IBM\""),
        "{}",
        answer("bars")
    );
    assert!(
        answer("bars").contains("rsi-14: Some("),
        "{}",
        answer("bars")
    );
    assert!(answer("bars-unknown").contains("code: \"unknown-symbol\""));
    assert!(answer("batch-fetch").contains("(\"symbol\", \"ZZZZ\")"));
    assert!(
        answer("import-bars").contains("symbol: \"7203.T\""),
        "{}",
        answer("import-bars")
    );
    assert!(
        answer("import-bad").contains("code: \"invalid-csv\""),
        "{}",
        answer("import-bad")
    );
    assert!(
        answer("advance-clock").contains("date: \"2010-08-23\""),
        "{}",
        answer("advance-clock")
    );
    for ((function, composed), (_, remote)) in answers[0].iter().zip(&answers[1]) {
        assert_eq!(composed, remote, "{function}");
    }
}
