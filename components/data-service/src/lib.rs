//! The `data-service` component: Spin's HTTP trigger in front of [`market_data`].
//!
//! Routes (below `/api/v1/data`):
//! `GET /stocks/{symbol}?from&to&interval=1m|5m|15m|1h|1d&include_features`,
//! `POST /batch-fetch {symbols, from, to}`, `GET /features/{symbol}?date`,
//! `POST /batch-features {symbols, date}`, `POST /closes {symbols, interval, from, to}`,
//! `GET /symbols`, `GET /exchanges/{tse|us}`, `GET|DELETE /cache[?symbol]`,
//! `GET /clock`, `PUT /clock` and `POST /clock/advance` (admin),
//! `GET /metrics` (Prometheus text).

// `#[http_component]` and the typed export expand to the canonical-ABI
// export, which is unsafe code.
#![allow(unsafe_code)]

use chrono::{DateTime, Duration, NaiveDate, Utc};
use market_data::clock::Step;
use market_data::import::ImportError;
use market_data::service::{Fetch, ImportedFile, MarketData, ServiceError, Settings};
use market_data::source::SourceKind;
use market_data::{DataError, History, Interval, Market, MarketClock, Symbol};
use serde::Deserialize;
use spin_adapter::{KvStore, Query, Route, Service, json_body, path_info};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::{http_component, variables};

mod typed;

static SERVICE: Service = Service {
    id: market_data::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    upstreams: market_data::UPSTREAMS,
    check_config: None,
};

#[http_component]
async fn handle(req: Request) -> Response {
    spin_adapter::serve(&SERVICE, req, route).await
}

/// The component's view of Spin: key-value store, outbound HTTP, variables.
struct Context {
    history: History,
    store: KvStore,
    settings: Settings,
}

struct SpinFetch;

impl Fetch for SpinFetch {
    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        let resp: Response = spin_sdk::http::send(Request::get(url).build())
            .await
            .map_err(|e| e.to_string())?;
        Ok((*resp.status(), resp.into_body()))
    }
}

fn var(name: &str) -> Result<String, Route> {
    variables::get(name)
        .map_err(|e| Route::error(500, "configuration", format!("variable `{name}`: {e}")))
}

impl Context {
    fn open() -> Result<Self, Route> {
        let history = History::bundled().map_err(|e| Route::error(500, e.code(), e.to_string()))?;
        let store = KvStore::open_default("data-service")?;
        let source = var("bar_source")?;
        let source = SourceKind::parse(&source).ok_or_else(|| {
            Route::error(
                500,
                "configuration",
                format!("bar_source `{source}` is not bundled, yahoo or stooq"),
            )
        })?;
        let ttl: i64 = var("cache_ttl_daily_secs")?.parse().map_err(|_| {
            Route::error(500, "configuration", "cache_ttl_daily_secs is not a number")
        })?;
        let replay = var("replay_date")?;
        // The replay clock is for the bundled history; live providers run on wall time.
        let default_clock = if replay.is_empty() || source != SourceKind::Bundled {
            MarketClock::live(Market::Us)
        } else {
            let date = parse_date("replay_date", &replay).map_err(|_| {
                Route::error(
                    500,
                    "configuration",
                    format!("replay_date `{replay}` is not YYYY-MM-DD"),
                )
            })?;
            MarketClock::after_close(Market::Us, date)
                .map_err(|e| Route::error(500, "configuration", format!("replay_date: {e}")))?
        };
        Ok(Self {
            history,
            store,
            settings: Settings {
                source,
                yahoo_base_url: var("yahoo_base_url")?,
                stooq_base_url: var("stooq_base_url")?,
                ttl_daily: Duration::seconds(ttl),
                default_clock,
            },
        })
    }

    fn service(&self) -> MarketData<'_, &KvStore, SpinFetch> {
        MarketData {
            history: &self.history,
            store: &self.store,
            fetch: SpinFetch,
            settings: self.settings.clone(),
            now: Utc::now(),
        }
    }
}

fn parse_date(name: &str, s: &str) -> Result<NaiveDate, Route> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        Route::error(
            400,
            market_data::error::field_code(name),
            format!("`{name}` must be YYYY-MM-DD, got `{s}`"),
        )
    })
}

fn date_param(query: &Query, name: &str) -> Result<Option<NaiveDate>, Route> {
    query.get(name).map(|s| parse_date(name, s)).transpose()
}

fn symbol(raw: &str) -> Result<Symbol, Route> {
    Symbol::parse(raw).map_err(|e| Route::error(e.status(), e.code(), e.to_string()))
}

fn failed(e: ServiceError) -> Route {
    Route::error(e.status(), e.code(), e.to_string())
}

/// Admin operations need the `admin_token` secret in `x-admin-token`; none without one set.
fn require_admin(req: &Request) -> Result<(), Route> {
    let token = var("admin_token")?;
    if token.is_empty() {
        return Err(Route::error(
            403,
            "admin-disabled",
            "set the admin_token variable to enable admin operations",
        ));
    }
    match req.header("x-admin-token").and_then(|v| v.as_str()) {
        Some(given) if given == token => Ok(()),
        _ => Err(Route::error(
            403,
            "forbidden",
            "admin token missing or wrong",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchFeaturesRequest {
    symbols: Vec<String>,
    #[serde(default)]
    date: Option<NaiveDate>,
    #[serde(default)]
    interval: Option<String>,
}

/// When `features` of `symbol` became known: the close of the bar they are
/// computed at.
fn known_at(
    symbol: &str,
    features: &market_data::features::FeatureVector,
    interval: Interval,
) -> Option<DateTime<Utc>> {
    let open = DateTime::from_timestamp(features.ts, 0)?;
    Some(
        Symbol::parse(symbol)
            .ok()?
            .market()
            .bar_times(open, interval)
            .close,
    )
}

/// One symbol's feature vector as data-service serves it.
/// `at` is when it became known: the close of the bar it is computed at.
fn feature_view(
    symbol: &str,
    features: &market_data::features::FeatureVector,
    interval: Interval,
) -> serde_json::Value {
    serde_json::json!({
        "symbol": symbol,
        "date": features.date,
        "interval": interval,
        "at": known_at(symbol, features, interval),
        "names": features.names,
        "values": features.values,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    symbols: Vec<String>,
    #[serde(default)]
    from: Option<NaiveDate>,
    #[serde(default)]
    to: Option<NaiveDate>,
    #[serde(default)]
    interval: Option<String>,
    /// Bars from at least this many days before the clock (with `from`, the
    /// earlier of the two): a caller that does not know the clock yet.
    #[serde(default)]
    lookback_days: Option<u16>,
}

/// A `POST /closes` body: WIT `data.closes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClosesRequest {
    symbols: Vec<String>,
    interval: String,
    #[serde(default)]
    from: Option<NaiveDate>,
    #[serde(default)]
    to: Option<NaiveDate>,
}

/// A `PUT /clock` body: `{"mode":"live"}` or `{"mode":"replay","as_of":...}`
/// with `as_of` an RFC 3339 instant in a session of the clock's market (its
/// close included) or a trading day `YYYY-MM-DD` (after its close), no later
/// than now; `market` and `interval` are kept from `current` unless given.
fn clock_body(body: &[u8], current: MarketClock, now: DateTime<Utc>) -> Result<MarketClock, Route> {
    let bad =
        |field: &str, message: String| Route::error(400, &format!("invalid-{field}"), message);
    let fields: serde_json::Map<String, serde_json::Value> = json_body(body)?;
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "mode" | "as_of" | "market" | "interval"))
    {
        return Err(Route::error(
            400,
            "unknown-field",
            format!(
                "unknown field `{unknown}` (the clock has `mode`, `as_of`, `market` and `interval`)"
            ),
        ));
    }
    let text = |field: &str| -> Result<Option<&str>, Route> {
        fields
            .get(field)
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| bad(field, format!("`{field}` is a string")))
            })
            .transpose()
    };
    let market = match text("market")? {
        None => current.market,
        Some(code) => Market::parse(code).ok_or_else(|| {
            bad(
                "market",
                format!("`market` is one of tse, us, fx, crypto, not `{code}`"),
            )
        })?,
    };
    let interval = match text("interval")? {
        None => current.interval,
        Some(raw) => parse_interval(raw)?,
    };
    let as_of = text("as_of")?;
    let clock = match text("mode")? {
        Some("live") if as_of.is_some() => {
            return Err(bad("as_of", "a live clock has no `as_of`".to_string()));
        }
        Some("live") => MarketClock {
            replay: None,
            market,
            interval,
        },
        Some("replay") => {
            let raw =
                as_of.ok_or_else(|| bad("as_of", "a replay clock needs `as_of`".to_string()))?;
            let outside = |e: DataError| Route::error(e.status(), e.code(), e.to_string());
            let clock = match DateTime::parse_from_rfc3339(raw) {
                Ok(at) => {
                    MarketClock::at(market, interval, at.with_timezone(&Utc)).map_err(outside)?
                }
                Err(_) => {
                    let date = parse_date("as_of", raw).map_err(|_| {
                        bad(
                            "as_of",
                            format!("`as_of` is an RFC 3339 instant or YYYY-MM-DD, got `{raw}`"),
                        )
                    })?;
                    MarketClock {
                        interval,
                        ..MarketClock::after_close(market, date).map_err(outside)?
                    }
                }
            };
            if clock.instant(now) > now {
                return Err(bad("as_of", format!("`as_of` {raw} is in the future")));
            }
            clock
        }
        _ => return Err(bad("mode", "`mode` is `live` or `replay`".to_string())),
    };
    Ok(clock)
}

/// The replay clock `clock` moved on by `step` of `market`'s calendar: 409
/// `clock-at-now` past the wall time.
fn advance(
    clock: MarketClock,
    step: Step,
    market: Market,
    now: DateTime<Utc>,
) -> Result<MarketClock, Route> {
    let next = clock.advance(step, market);
    if next.instant(now) > now {
        return Err(Route::error(
            409,
            "clock-at-now",
            "the replay clock cannot pass the wall time",
        ));
    }
    Ok(next)
}

fn parse_interval(raw: &str) -> Result<Interval, Route> {
    Interval::parse(raw).ok_or_else(|| {
        Route::error(
            400,
            "unsupported-interval",
            format!("interval `{raw}` is not one of 1m, 5m, 15m, 1h, 1d"),
        )
    })
}

fn interval(raw: Option<&str>) -> Result<Interval, Route> {
    parse_interval(raw.unwrap_or("1d"))
}

async fn route(req: Request) -> Route {
    match dispatch(req).await {
        Ok(route) | Err(route) => route,
    }
}

/// The `invalid-csv` answer: every row error (the first
/// [`market_data::import::MAX_ERRORS`]) with its line.
fn invalid_csv(e: &ImportError) -> Route {
    Route::Json(
        400,
        serde_json::json!({
            "code": "invalid-csv",
            "message": e.to_string(),
            "errors": e.errors,
            "count": e.count,
        }),
    )
}

/// The CSV files of the `import_dir` folder (a `files` mount), each read
/// once: a file is imported again only when its size or modification time
/// changes, and one that does not parse is skipped with its errors in the
/// index (`GET /import`). `<symbol>.<interval>.csv` names the file's symbol
/// (unless it has a `symbol` column) and interval (`7203.T.1m.csv`).
fn import_files(md: &MarketData<'_, &KvStore, SpinFetch>) -> Result<(), Route> {
    let dir = var("import_dir")?;
    // No folder mounted (or none configured): nothing to import.
    let Ok(entries) = std::fs::read_dir(dir.trim()) else {
        return Ok(());
    };
    let mut files: Vec<(String, std::path::PathBuf, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let meta = entry.metadata().ok().filter(|m| m.is_file())?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            name.to_ascii_lowercase()
                .ends_with(".csv")
                .then(|| (name, entry.path(), format!("{}-{modified}", meta.len())))
        })
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    files.sort();
    let mut index = md.import_index();
    let fresh: Vec<_> = files
        .into_iter()
        .filter(|(name, _, stamp)| index.files.get(name).is_none_or(|f| &f.stamp != stamp))
        .collect();
    for (name, path, stamp) in fresh {
        let stem = &name[..name.len() - 4];
        let (symbol, interval) = match stem.rsplit_once('.') {
            Some((symbol, interval)) => (Symbol::parse(symbol).ok(), Interval::parse(interval)),
            None => (None, None),
        };
        let refused = |message: String| {
            let none = ImportError {
                errors: Vec::new(),
                count: 0,
            };
            (none, message)
        };
        let outcome = match (interval, std::fs::read(&path)) {
            (None, _) => Err(refused(format!(
                "`{name}` is not <symbol>.<interval>.csv (7203.T.1m.csv)"
            ))),
            (_, Err(e)) => Err(refused(format!("`{name}` cannot be read: {e}"))),
            (Some(interval), Ok(text)) => {
                market_data::import::parse_csv(&text, interval, symbol.as_ref()).map_err(|e| {
                    let message = e.to_string();
                    (e, message)
                })
            }
        };
        let file = match outcome {
            Ok(series) => {
                md.import(&series);
                // `import` rewrote the index: take its series.
                index.series = md.import_index().series;
                ImportedFile {
                    stamp,
                    status: "imported".into(),
                    errors: Vec::new(),
                }
            }
            Err((e, message)) => {
                eprintln!("data-service: import of {name} refused: {message}");
                ImportedFile {
                    stamp,
                    status: message,
                    errors: e.errors,
                }
            }
        };
        index.files.insert(name, file);
        md.set_import_index(&index);
    }
    Ok(())
}

async fn dispatch(req: Request) -> Result<Route, Route> {
    let path = path_info(&SERVICE, &req);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ctx = Context::open()?;
    let md = ctx.service();
    import_files(&md)?;
    Ok(match (req.method(), segments.as_slice()) {
        (Method::Post, ["import"]) => {
            require_admin(&req)?;
            let query = Query::of(&req, &["interval", "symbol"])?;
            let interval = interval(query.get("interval"))?;
            let default = query.get("symbol").map(symbol).transpose()?;
            let series = market_data::import::parse_csv(req.body(), interval, default.as_ref())
                .map_err(|e| invalid_csv(&e))?;
            let imported = md.import(&series);
            Route::Json(
                201,
                serde_json::json!({
                    "imported": imported,
                    "rows": series.iter().map(|s| s.bars.len()).sum::<usize>(),
                }),
            )
        }
        (Method::Get, ["import"]) => {
            Query::none(&req)?;
            Route::ok(md.import_index())
        }
        (Method::Get, ["stocks", raw]) => {
            let query = Query::of(&req, &["interval", "from", "to", "include_features"])?;
            let symbol = symbol(raw)?;
            let interval = interval(query.get("interval"))?;
            let (from, to) = (date_param(&query, "from")?, date_param(&query, "to")?);
            let mut bars = md.bars(&symbol, interval, from, to).await.map_err(failed)?;
            if query.flag("include_features")? {
                bars = bars.with_indicators();
            }
            Route::ok(bars)
        }
        (Method::Post, ["batch-fetch"]) => {
            Query::none(&req)?;
            let batch: BatchRequest = json_body(req.body())?;
            let interval = interval(batch.interval.as_deref())?;
            let clock = md.clock();
            let back = batch
                .lookback_days
                .map(|days| clock.date(md.now) - chrono::Duration::days(days.into()));
            let from = match (batch.from, back) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let results = md
                .batch(clock, &batch.symbols, interval, from, batch.to)
                .await
                .map_err(failed)?;
            let results: Vec<serde_json::Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(bars) => serde_json::json!({ "symbol": bars.symbol, "ok": bars }),
                    Err((symbol, e)) => serde_json::json!({
                        "symbol": symbol,
                        "error": { "code": e.code(), "message": e.to_string() }
                    }),
                })
                .collect();
            // The clock the bars were cut at: a caller needs no second call.
            Route::ok(serde_json::json!({ "results": results, "clock": clock.view(md.now) }))
        }
        (Method::Post, ["closes"]) => {
            Query::none(&req)?;
            let batch: ClosesRequest = json_body(req.body())?;
            let interval = parse_interval(&batch.interval)?;
            let results = md
                .batch(md.clock(), &batch.symbols, interval, batch.from, batch.to)
                .await
                .map_err(failed)?;
            let results: Vec<serde_json::Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(bars) => serde_json::json!({ "symbol": bars.symbol, "ok": bars.closes() }),
                    Err((symbol, e)) => serde_json::json!({
                        "symbol": symbol,
                        "error": { "code": e.code(), "message": e.to_string() }
                    }),
                })
                .collect();
            Route::ok(serde_json::json!({ "results": results }))
        }
        (Method::Get, ["features", raw]) => {
            let query = Query::of(&req, &["date", "interval"])?;
            let symbol = symbol(raw)?;
            let interval = interval(query.get("interval"))?;
            let features = md
                .features_on(&symbol, date_param(&query, "date")?, interval)
                .await
                .map_err(failed)?;
            Route::ok(feature_view(symbol.as_str(), &features, interval))
        }
        (Method::Post, ["batch-features"]) => {
            Query::none(&req)?;
            let batch: BatchFeaturesRequest = json_body(req.body())?;
            let interval = interval(batch.interval.as_deref())?;
            let results = md
                .batch_features(&batch.symbols, batch.date, interval)
                .await
                .map_err(failed)?;
            // In the order asked, each under the symbol as the caller spelled it.
            let results: Vec<serde_json::Value> = results
                .into_iter()
                .zip(&batch.symbols)
                .map(|(r, asked)| match r {
                    Ok(features) => feature_view(asked, &features, interval),
                    Err((symbol, e)) => serde_json::json!({
                        "symbol": symbol,
                        "status": e.status(),
                        "error": { "code": e.code(), "message": e.to_string() }
                    }),
                })
                .collect();
            Route::ok(serde_json::json!({ "results": results }))
        }
        (Method::Get, ["symbols"]) => {
            Query::none(&req)?;
            let symbols: Vec<&str> = ctx
                .history
                .series()
                .iter()
                .map(|s| s.symbol.as_str())
                .collect();
            // The daily universe, and the intraday series beside it.
            Route::ok(serde_json::json!({
                "source": "bundled",
                "symbols": symbols,
                "intraday": ctx.history.intraday.series(),
            }))
        }
        (Method::Get, ["exchanges", market]) => {
            Query::none(&req)?;
            match Market::parse(market) {
                Some(market) => Route::ok(market.exchange()),
                None => Route::error(
                    404,
                    "unknown-market",
                    format!("no market `{market}` (tse, us, fx, crypto)"),
                ),
            }
        }
        (Method::Get, ["metrics"]) => {
            Query::none(&req)?;
            Route::Text("text/plain; version=0.0.4", md.metrics())
        }
        (Method::Get, ["cache"]) => {
            Query::none(&req)?;
            Route::ok(serde_json::json!({ "entries": md.cache_entries() }))
        }
        (Method::Delete, ["cache"]) => {
            let query = Query::of(&req, &["symbol"])?;
            let only = query.get("symbol").map(symbol).transpose()?;
            Route::ok(serde_json::json!({ "deleted": md.clear_cache(only.as_ref()) }))
        }
        (Method::Get, ["clock"]) => {
            Query::none(&req)?;
            Route::ok(md.clock().view(md.now))
        }
        (Method::Put, ["clock"]) => {
            Query::none(&req)?;
            require_admin(&req)?;
            let clock = clock_body(req.body(), md.clock(), md.now)?;
            md.set_clock(clock);
            Route::ok(clock.view(md.now))
        }
        (Method::Post, ["clock", "advance"]) => {
            let query = Query::of(&req, &["by", "market"])?;
            require_admin(&req)?;
            let clock = md.clock();
            let step = match query.get("by") {
                None => Step::Bar,
                Some(raw) => Step::parse(raw).ok_or_else(|| {
                    Route::error(
                        400,
                        "invalid-by",
                        format!("`by` is bar, session or day, not `{raw}`"),
                    )
                })?,
            };
            // The clock's own calendar unless the caller names another.
            let market = match query.get("market") {
                None => clock.market,
                Some(code) => Market::parse(code).ok_or_else(|| {
                    Route::error(400, "unknown-market", format!("no market `{code}`"))
                })?,
            };
            let next = advance(clock, step, market, md.now)?;
            md.set_clock(next);
            Route::ok(next.view(md.now))
        }
        _ => Route::NotFound,
    })
}

/// The adapter's own tests, compiled for wasm32-wasip2 and run by
/// `runtime-host test` (cargo's runner): routing, request parsing, error
/// mapping and the typed export's conversions, on the host's real
/// variables and key-value store (data-service's grants, a store of its own).
#[cfg(test)]
mod tests {
    use super::*;
    use typed::wit::Guest as _;

    fn answer(method: Method, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let req = spin_adapter::testing::request(&SERVICE, method, path, body);
        spin_adapter::testing::answer(spin_sdk::http::run(route(req)))
    }

    #[test]
    fn the_clock_is_the_replay_day_of_the_manifest() {
        let (status, body) = answer(Method::Get, "/clock", b"");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mode"], "replay");
        assert_eq!(body["date"], "2010-08-19");
        assert_eq!(body["market"], "us");
    }

    #[test]
    fn routes_refuse_what_they_do_not_take() {
        assert_eq!(answer(Method::Get, "/nowhere", b"").0, 404);
        let (status, body) = answer(Method::Get, "/clock?date=2010-01-01", b"");
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("unknown-parameter"))
        );
        // Admin operations with no admin token configured.
        let (status, body) = answer(Method::Put, "/clock", br#"{"mode":"live"}"#);
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("admin-disabled"))
        );
    }

    #[test]
    fn a_clock_body_names_the_field_at_fault() {
        let now = DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
            .unwrap()
            .to_utc();
        let current = MarketClock::live(Market::Us);
        for (body, code) in [
            (&br#"{"mode":"replay"}"#[..], "invalid-as_of"),
            (br#"{"mode":"later"}"#, "invalid-mode"),
            (br#"{"mode":"live","as_of":"2010-08-19"}"#, "invalid-as_of"),
            (
                br#"{"mode":"replay","as_of":"2030-01-02"}"#,
                "invalid-as_of",
            ),
            (
                br#"{"mode":"replay","as_of":"2010-08-19","market":"mars"}"#,
                "invalid-market",
            ),
            (br#"{"mode":"replay","when":"2010-08-19"}"#, "unknown-field"),
            (
                br#"{"mode":"replay","as_of":"2010-08-19","interval":"2h"}"#,
                "unsupported-interval",
            ),
        ] {
            match clock_body(body, current, now) {
                Err(Route::Error(400, e)) => {
                    assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        let clock = clock_body(br#"{"mode":"replay","as_of":"2010-08-19"}"#, current, now);
        assert!(matches!(clock, Ok(c) if c.replay.is_some()));
    }

    #[test]
    fn closes_over_http_are_numbers_each_symbol_alone() {
        let body = br#"{"symbols":["IBM","ZZZZ"],"interval":"1d","from":"2010-08-01"}"#;
        let (status, answer) = answer(Method::Post, "/closes", body);
        assert_eq!(status, 200, "{answer}");
        let ibm = &answer["results"][0]["ok"];
        assert_eq!(ibm["symbol"], "IBM");
        let closes = ibm["closes"].as_array().unwrap();
        // 2010-08-02 to the replay day 2010-08-19: 14 trading days.
        assert_eq!(closes.len(), 14);
        assert!(closes.iter().all(|c| c.as_f64().is_some_and(|c| c > 100.0)));
        assert_eq!(ibm["days"], 14);
        assert_eq!(answer["results"][1]["error"]["code"], "unknown-symbol");
        let (status, answer) = answer_of(br#"{"symbols":["IBM"],"interval":"2d"}"#);
        assert_eq!(
            (status, answer["code"].as_str()),
            (400, Some("unsupported-interval"))
        );
    }

    fn answer_of(body: &[u8]) -> (u16, serde_json::Value) {
        answer(Method::Post, "/closes", body)
    }

    /// The typed export answers what the route does, in WIT types.
    #[test]
    fn the_typed_export_is_the_routes_library_call() {
        use typed::{t, wit};
        let each = typed::Typed::closes(
            vec!["IBM".into(), "ZZZZ".into()],
            t::Interval::OneDay,
            Some("2010-08-01".into()),
            None,
        )
        .unwrap();
        let ibm = each[0].as_ref().unwrap();
        assert_eq!(
            (ibm.symbol.as_str(), ibm.closes.len(), ibm.days),
            ("IBM", 14, 14)
        );
        assert!(matches!(ibm.source, wit::SourceKind::Bundled));
        let unknown = each[1].as_ref().unwrap_err();
        assert_eq!(unknown.code, "unknown-symbol");
        assert_eq!(
            unknown.details.as_deref(),
            Some(&[("symbol".to_string(), "ZZZZ".to_string())][..])
        );
        let bad = typed::Typed::closes(
            vec!["IBM".into()],
            t::Interval::OneDay,
            Some("Aug 1".into()),
            None,
        );
        assert_eq!(bad.unwrap_err().code, "invalid-from");
        let clock = typed::Typed::clock().unwrap();
        assert_eq!(
            (clock.mode.as_str(), clock.date.as_str()),
            ("replay", "2010-08-19")
        );
        assert!(matches!(clock.market, t::Market::Us));
        assert!(typed::Typed::symbols().unwrap().len() > 500);
    }
}
