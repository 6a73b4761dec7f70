//! The `symbol-service` component: Spin's HTTP trigger in front of [`screening`].
//!
//! `GET /api/v1/symbols/recommend?limit=N&interval=1d` screens the universe
//! with the default filter chain; `POST /api/v1/symbols/screen {filters,
//! weights, universe, limit, interval}` with the caller's; the typed export
//! `daytrade:platform/symbols` runs the default one. Closes and volumes come
//! from the typed import `daytrade:platform/data` in batches of 50: a
//! function call into data-service when the two are composed, HTTP through
//! the remote adapter when data-service runs in its own pod.

// `#[http_component]` and the typed bindings expand to canonical-ABI code, which is unsafe.
#![allow(unsafe_code)]

use chrono::{Duration, NaiveDate};
use market_data::{Interval, Market, Symbol};
use screening::{FilterChain, ScoreWeights, Series};
use serde::Deserialize;
use spin_adapter::{Query, Route, Service, json_body, path_info};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::{http_component, variables};

wit_bindgen::generate!({
    world: "symbol-service",
    path: "../../wit",
    with: {
        "daytrade:platform/types@0.1.0": daytrade_bindings::types,
    },
});

use daytrade::platform::data;
use daytrade_bindings::types as t;
use exports::daytrade::platform::symbols as wit;

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
const BATCH: usize = market_data::service::MAX_BATCH;
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

/// A screening's outcome, for the HTTP answer and the typed export alike.
struct Screened {
    as_of: NaiveDate,
    interval: Interval,
    universe: usize,
    screened: usize,
    weights: ScoreWeights,
    recommendations: Vec<screening::Recommendation>,
    rejected: Vec<screening::Rejection>,
    failures: Vec<serde_json::Value>,
}

async fn screen(request: ScreenRequest, with_rejections: bool) -> Result<Route, Route> {
    let limit = request.limit.unwrap_or(10);
    let filters = request.filters.clone();
    let screened = run_screen(request).await?;
    let mut body = serde_json::json!({
        "as_of": screened.as_of,
        "interval": screened.interval,
        "universe": screened.universe,
        "screened": screened.screened,
        "passed": screened.recommendations.len(),
        "weights": screened.weights,
        "recommendations": screened.recommendations.into_iter().take(limit).collect::<Vec<_>>(),
        "fetch_failures": screened.failures,
    });
    if with_rejections {
        body["filters"] = serde_json::to_value(&filters).unwrap_or_default();
        body["rejected"] = serde_json::to_value(&screened.rejected).unwrap_or_default();
    }
    Ok(Route::ok(body))
}

/// Screen the universe on data-service's closes: the request checked, the
/// market clock read once, the closes fetched by the typed `data` import.
async fn run_screen(request: ScreenRequest) -> Result<Screened, Route> {
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
        None => default_universe()?,
    };
    let as_of = clock()?;
    let from = as_of - Duration::days(lookback_days(interval));
    // Daily bars up to the last complete day; intraday ones up to the clock.
    let to = (interval == Interval::OneDay).then_some(as_of);
    let (series, failures) = fetch_series(&universe, from, to, interval).map_err(|e| match e {
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
    Ok(Screened {
        as_of,
        interval,
        universe: universe.len(),
        screened: series.len(),
        weights,
        recommendations,
        rejected,
        failures,
    })
}

/// The universe: the `universe` variable (comma-separated), the file named by
/// `universe_file`, or everything data-service has bundled.
fn default_universe() -> Result<Vec<String>, Route> {
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
    data::symbols().map_err(upstream)
}

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

/// data-service's error as this service answers it ([`spin_adapter::typed_status`]).
fn upstream(e: t::Error) -> Route {
    spin_adapter::typed_error(&e.code, e.message)
}

/// The clock's last complete trading day: screening runs on daily bars.
fn clock() -> Result<NaiveDate, Route> {
    let clock = data::clock().map_err(upstream)?;
    NaiveDate::parse_from_str(&clock.date, "%Y-%m-%d")
        .map_err(|_| Route::error(502, "upstream-malformed", "data-service clock has no date"))
}

/// Every symbol's closes and volumes, a data-service batch at a time;
/// returns the series and per-symbol failures.
fn fetch_series(
    universe: &[String],
    from: NaiveDate,
    to: Option<NaiveDate>,
    interval: Interval,
) -> Result<(Vec<Series>, Vec<serde_json::Value>), Route> {
    let mut series = Vec::new();
    let mut failures = Vec::new();
    for chunk in universe.chunks(BATCH) {
        let results = data::closes(
            chunk,
            interval.into(),
            Some(&from.to_string()),
            to.map(|d| d.to_string()).as_deref(),
        )
        .map_err(upstream)?;
        for (result, asked) in results.into_iter().zip(chunk) {
            match result {
                Ok(c) => series.push(to_series(c, interval)),
                Err(e) => failures.push(serde_json::json!({
                    "symbol": asked,
                    "error": { "code": e.code, "message": e.message },
                })),
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
fn to_series(c: data::ClosesVolumes, interval: Interval) -> Series {
    let volume = c.volumes.iter().map(|&v| v as f64).collect();
    let mut series = Series::daily(c.symbol, c.closes, volume);
    if interval.is_intraday() {
        let market = Symbol::parse(&series.symbol).map_or(Market::Us, |s| s.market());
        series.bars_per_day = series.close.len() as f64 / f64::from(c.days.max(1));
        series.bars_per_year = series.bars_per_day * trading_days(market);
    }
    series
}

/// The typed export `daytrade:platform/symbols`: the default screening, as
/// `GET /recommend` runs it.
struct Typed;

export!(Typed);

impl wit::Guest for Typed {
    fn recommend(
        limit: u32,
        interval: Option<t::Interval>,
    ) -> Result<Vec<wit::Recommendation>, t::Error> {
        let interval = interval.map(daytrade_bindings::interval_code);
        let request = ScreenRequest {
            limit: Some(limit as usize),
            interval: interval.map(str::to_string),
            ..ScreenRequest::default()
        };
        let screened = spin_sdk::http::run(run_screen(request)).map_err(|route| match route {
            Route::Error(_, e) => t::Error {
                code: e.code,
                message: e.message,
                details: None,
            },
            _ => t::Error {
                code: "internal".into(),
                message: "screening gave no answer".into(),
                details: None,
            },
        })?;
        Ok(screened
            .recommendations
            .into_iter()
            .take(limit as usize)
            .map(|r| wit::Recommendation {
                metrics: r.metrics.pairs(),
                symbol: r.symbol,
                score: r.score,
                reasons: r.reasons,
            })
            .collect())
    }

    fn health() -> t::HealthReport {
        spin_sdk::http::run(spin_adapter::health(&SERVICE, false)).into()
    }

    fn version() -> t::VersionInfo {
        spin_adapter::version(&SERVICE).into()
    }
}

/// The adapter's own tests, compiled for wasm32-wasip2 and run by
/// `runtime-host test` (cargo's runner) with symbol-service's grants and
/// its `data` import linked to data-service, as `spin.toml` composes them.
#[cfg(test)]
mod tests {
    use super::*;
    use wit::Guest as _;

    fn answer(method: Method, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let req = spin_adapter::testing::request(&SERVICE, method, path, body);
        spin_adapter::testing::answer(spin_sdk::http::run(route(req)))
    }

    #[test]
    fn recommends_through_the_typed_data_import() {
        let (status, body) = answer(Method::Get, "/recommend?limit=3", b"");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["as_of"], "2010-08-19");
        assert_eq!(body["universe"], body["screened"]);
        assert_eq!(body["recommendations"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn the_typed_export_is_the_default_screening() {
        let typed = Typed::recommend(3, None).unwrap();
        let (_, body) = answer(Method::Get, "/recommend?limit=3", b"");
        let symbols: Vec<&str> = typed.iter().map(|r| r.symbol.as_str()).collect();
        let routed: Vec<&str> = body["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["symbol"].as_str().unwrap())
            .collect();
        assert_eq!(symbols, routed);
        let names: Vec<&str> = typed[0].metrics.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"avg_turnover") && names.contains(&"volatility"),
            "{names:?}"
        );
        assert_eq!(Typed::recommend(0, None).unwrap_err().code, "invalid-limit");
    }

    #[test]
    fn bad_requests_name_their_field() {
        for (path, body, code) in [
            ("/recommend?limit=0", &b""[..], "invalid-limit"),
            ("/recommend?interval=2h", b"", "unsupported-interval"),
            (
                "/screen",
                br#"{"universe":["IBM","IBM"]}"#,
                "invalid-universe",
            ),
            (
                "/screen",
                br#"{"universe":["IBM"],"weights":{"momentum":-1}}"#,
                "unknown-field",
            ),
            (
                "/screen",
                br#"{"filters":{"min_price":"x"}}"#,
                "invalid-filters.min_price",
            ),
        ] {
            let method = if body.is_empty() {
                Method::Get
            } else {
                Method::Post
            };
            let (status, answer) = answer(method, path, body);
            assert_eq!(
                (status, answer["code"].as_str()),
                (400, Some(code)),
                "{path}"
            );
        }
    }

    #[test]
    fn data_service_errors_keep_their_meaning() {
        let error = |code: &str| t::Error {
            code: code.into(),
            message: "m".into(),
            details: None,
        };
        for (code, status) in [
            ("invalid-from", 400),
            ("unsupported-interval", 400),
            ("unknown-symbol", 404),
            ("clock-outside-session", 400),
            ("not-enough-history", 422),
            ("store-unavailable", 503),
            ("configuration", 500),
            ("corrupt-history", 500),
            ("provider-down", 502),
        ] {
            assert!(
                matches!(upstream(error(code)), Route::Error(s, ref e) if s == status && e.code == code),
                "{code}"
            );
        }
    }

    #[test]
    fn intraday_closes_are_annualised_over_their_bars_a_day() {
        let closes = |days| data::ClosesVolumes {
            symbol: "BTC-USD".into(),
            interval: t::Interval::OneHour,
            source: data::SourceKind::Bundled,
            closes: vec![1.0; 48],
            volumes: vec![1; 48],
            days,
        };
        let series = to_series(closes(2), Interval::OneHour);
        assert_eq!(
            (series.bars_per_day, series.bars_per_year),
            (24.0, 24.0 * 365.0)
        );
        let daily = to_series(closes(48), Interval::OneDay);
        assert_eq!(daily.bars_per_day, 1.0);
    }
}
