//! The `symbol-service` component: Spin's HTTP trigger in front of [`screening`].
//!
//! `GET /api/v1/symbols/recommend?limit=N&interval=1d` screens the universe
//! with the default filter chain; `POST /api/v1/symbols/screen {filters,
//! weights, universe, limit, interval}` with the caller's. Bars come from data-service over HTTP
//! (`data_service_url`: service chaining locally), in concurrent batches of
//! 50, never one request per symbol.

// `#[http_component]` expands to the canonical-ABI export, which is unsafe code.
#![allow(unsafe_code)]

use chrono::{Duration, NaiveDate};
use daytrade_contract::ServiceId;
use market_data::{Interval, Market, Symbol};
use screening::{FilterChain, ScoreWeights, Series};
use serde::Deserialize;
use spin_adapter::{
    Query, Route, Service, get_json, json_body, path_info, post_json, upstream_url,
};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::{http_component, variables};

static SERVICE: Service = Service {
    id: screening::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    upstreams: screening::UPSTREAMS,
    check_config: None,
};

/// Calendar days of history fetched per symbol: enough for the default
/// 60-bar minimum (an hourly TSE day has 6 bars, a minute one 300).
fn lookback_days(interval: Interval) -> i64 {
    match interval {
        Interval::OneDay => 180,
        Interval::OneHour => 30,
        Interval::FifteenMinutes => 10,
        Interval::FiveMinutes => 5,
        Interval::OneMinute => 3,
    }
}
/// data-service's batch limit.
const BATCH: usize = 50;
const MAX_LIMIT: usize = 100;

#[http_component]
async fn handle(req: Request) -> Response {
    spin_adapter::serve(&SERVICE, req, route).await
}

async fn route(req: Request) -> Route {
    match dispatch(req).await {
        Ok(route) | Err(route) => route,
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScreenRequest {
    #[serde(default)]
    filters: FilterChain,
    #[serde(default)]
    weights: Option<ScoreWeights>,
    #[serde(default)]
    universe: Option<Vec<String>>,
    #[serde(default)]
    limit: Option<usize>,
    /// The bars screened: `1d` (default), or an intraday interval.
    #[serde(default)]
    interval: Option<String>,
}

fn parse_interval(raw: Option<&str>) -> Result<Interval, Route> {
    let raw = raw.unwrap_or("1d");
    Interval::parse(raw).ok_or_else(|| {
        Route::error(
            400,
            "unsupported-interval",
            format!("interval `{raw}` is not one of 1m, 5m, 15m, 1h, 1d"),
        )
    })
}

async fn dispatch(req: Request) -> Result<Route, Route> {
    let path = path_info(&SERVICE, &req);
    match (req.method(), path.as_str()) {
        (Method::Get, "/recommend") => {
            let query = Query::of(&req, &["limit", "interval"])?;
            let limit = match query.get("limit") {
                None => 10,
                Some(raw) => raw.parse().map_err(|_| {
                    Route::error(
                        400,
                        "invalid-limit",
                        format!("limit `{raw}` is not a number"),
                    )
                })?,
            };
            let request = ScreenRequest {
                limit: Some(limit),
                interval: query.get("interval").map(str::to_string),
                ..ScreenRequest::default()
            };
            screen(request, false).await
        }
        (Method::Post, "/screen") => {
            Query::none(&req)?;
            let request: ScreenRequest = json_body(req.body())?;
            screen(request, true).await
        }
        _ => Ok(Route::NotFound),
    }
}

async fn screen(request: ScreenRequest, with_rejections: bool) -> Result<Route, Route> {
    let limit = request.limit.unwrap_or(10);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Route::error(
            400,
            "invalid-limit",
            format!("limit must be 1 to {MAX_LIMIT}"),
        ));
    }
    request
        .filters
        .validate()
        .map_err(|(field, e)| Route::error(400, &format!("invalid-filters.{field}"), e))?;
    let interval = parse_interval(request.interval.as_deref())?;
    let weights = request.weights.unwrap_or_default();
    weights.validate().map_err(|(field, message)| {
        Route::error(400, &format!("invalid-weights.{field}"), message)
    })?;
    let data = upstream_url(&ServiceId::DATA)
        .map_err(|e| Route::error(500, "configuration", e.to_string()))?;
    let asked = request.universe.is_some();
    let universe = match request.universe {
        Some(symbols) if symbols.is_empty() || symbols.len() > 1000 => {
            return Err(Route::error(
                400,
                "invalid-universe",
                "a universe has 1 to 1000 symbols",
            ));
        }
        Some(symbols) => {
            check_universe(&symbols)?;
            symbols
        }
        None => default_universe(&data).await?,
    };
    let as_of = clock(&data).await?;
    let from = as_of - Duration::days(lookback_days(interval));
    // Daily bars up to the last complete day; intraday ones up to the clock.
    let to = (interval == Interval::OneDay).then_some(as_of);
    let (series, failures) = fetch_series(&data, &universe, from, to, interval)
        .await
        .map_err(|e| match e {
            // data-service checks each symbol: a bad one is the caller's
            // universe entry, or our own configuration's.
            Route::Error(400, error) if error.code == "invalid-symbols" => {
                if asked {
                    Route::error(400, "invalid-universe", error.message)
                } else {
                    Route::error(
                        500,
                        "configuration",
                        format!("the configured universe: {}", error.message),
                    )
                }
            }
            other => other,
        })?;
    let (recommendations, rejected) = screening::screen(&series, &request.filters, &weights);
    let mut body = serde_json::json!({
        "as_of": as_of,
        "interval": interval,
        "universe": universe.len(),
        "screened": series.len(),
        "passed": recommendations.len(),
        "weights": weights,
        "recommendations": recommendations.into_iter().take(limit).collect::<Vec<_>>(),
        "fetch_failures": failures,
    });
    if with_rejections {
        body["filters"] = serde_json::to_value(&request.filters).unwrap_or_default();
        body["rejected"] = serde_json::to_value(&rejected).unwrap_or_default();
    }
    Ok(Route::ok(body))
}

/// The universe: the `universe` variable (comma-separated), the file named by
/// `universe_file`, or everything data-service has bundled.
/// A caller's universe: every entry a ticker, none twice (data-service
/// reports a malformed symbol as that symbol's failure, and sees only one
/// batch of them at a time).
fn check_universe(symbols: &[String]) -> Result<(), Route> {
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in symbols.iter().enumerate() {
        let symbol = Symbol::parse(raw)
            .map_err(|e| Route::error(400, "invalid-universe", format!("`universe[{i}]`: {e}")))?;
        if !seen.insert(symbol.as_str().to_string()) {
            return Err(Route::error(
                400,
                "invalid-universe",
                format!("`universe[{i}]` `{raw}` is {symbol}, listed twice"),
            ));
        }
    }
    Ok(())
}

async fn default_universe(data: &str) -> Result<Vec<String>, Route> {
    let listed = variables::get("universe").unwrap_or_default();
    if !listed.trim().is_empty() {
        return Ok(listed
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect());
    }
    let file = variables::get("universe_file").unwrap_or_default();
    if !file.is_empty() {
        let text = std::fs::read_to_string(&file).map_err(|e| {
            Route::error(500, "configuration", format!("universe_file {file}: {e}"))
        })?;
        return Ok(text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|s| !s.is_empty())
            .collect());
    }
    let body = get_json(&format!("{data}/api/v1/data/symbols")).await?;
    Ok(body["symbols"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

async fn clock(data: &str) -> Result<NaiveDate, Route> {
    let body = get_json(&format!("{data}/api/v1/data/clock")).await?;
    // The clock's last complete trading day: screening runs on daily bars.
    body["date"]
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .ok_or_else(|| Route::error(502, "upstream-malformed", "data-service clock has no date"))
}

/// Fetch every symbol's bars in concurrent batches; returns the series and per-symbol failures.
async fn fetch_series(
    data: &str,
    universe: &[String],
    from: NaiveDate,
    to: Option<NaiveDate>,
    interval: Interval,
) -> Result<(Vec<Series>, Vec<serde_json::Value>), Route> {
    let url = format!("{data}/api/v1/data/batch-fetch");
    let batches = universe.chunks(BATCH).map(|chunk| {
        let body = serde_json::json!({
            "symbols": chunk, "from": from, "to": to, "interval": interval,
        });
        let url = url.clone();
        async move { post_json(&url, &body).await }
    });
    let mut series = Vec::new();
    let mut failures = Vec::new();
    for answer in futures::future::join_all(batches).await {
        for result in answer?["results"].as_array().cloned().unwrap_or_default() {
            let symbol = result["symbol"].as_str().unwrap_or_default().to_string();
            match result["ok"]["bars"].as_array() {
                Some(bars) => series.push(to_series(symbol, bars, interval)),
                None => {
                    failures.push(serde_json::json!({ "symbol": symbol, "error": result["error"] }))
                }
            }
        }
    }
    Ok((series, failures))
}

/// Trading days a year of `market`, to annualise intraday bars.
fn trading_days(market: Market) -> f64 {
    match market {
        Market::Tse | Market::Us => screening::metrics::TRADING_DAYS,
        Market::Fx => 260.0,
        Market::Crypto => 365.0,
    }
}

/// A symbol's closes and volumes; on intraday bars, with as many bars a
/// day as the series has (bars over the trading days they fall on).
fn to_series(symbol: String, bars: &[serde_json::Value], interval: Interval) -> Series {
    let num = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .or_else(|| v.as_f64())
    };
    let mut close = Vec::with_capacity(bars.len());
    let mut volume = Vec::with_capacity(bars.len());
    for bar in bars {
        if let (Some(c), Some(v)) = (num(&bar["close"]), bar["volume"].as_f64()) {
            close.push(c);
            volume.push(v);
        }
    }
    let mut series = Series::daily(symbol, close, volume);
    if interval.is_intraday() {
        let mut days: Vec<&str> = bars.iter().filter_map(|b| b["date"].as_str()).collect();
        days.dedup();
        let market = Symbol::parse(&series.symbol).map_or(Market::Us, |s| s.market());
        series.bars_per_day = bars.len() as f64 / days.len().max(1) as f64;
        series.bars_per_year = series.bars_per_day * trading_days(market);
    }
    series
}
