//! `daytrade:platform/data` over HTTP: the component that satisfies a typed
//! `data` import when data-service runs in a pod of its own. Each function is
//! one request to data-service's route for it (named in `wit/data.wit`), at
//! the `data_service_url` variable, and its JSON answer (the projection
//! `wit/README.md` defines) read back into the WIT types. Between pods this
//! keeps what the mesh gives HTTP: mTLS, retries, canaries, authorization.
//!
//! It runs with the grants of the component that imports it
//! (`inherit_configuration = ["allowed_outbound_hosts", "variables"]`):
//! data-service's URL among its outbound hosts and `data_service_url` (and
//! `admin_token`, for the admin operations) among its variables.

// The typed bindings expand to canonical-ABI code, which is unsafe.
#![allow(unsafe_code)]

use daytrade_contract::{ApiError, Health, Version};
use market_data::Interval;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use spin_adapter::remote;
use spin_sdk::http::Request;

wit_bindgen::generate!({
    world: "data-service",
    path: "../../wit",
    with: {
        "daytrade:platform/types@0.1.0": daytrade_bindings::types,
    },
});

use daytrade_bindings::{interval_code, types as t, unreachable_health};
use exports::daytrade::platform::data as wit;

struct Remote;

export!(Remote);

/// data-service's route `path` (below `/api/v1/data`).
fn url(path: &str) -> Result<String, t::Error> {
    let base = remote::base("data_service_url").map_err(t::Error::from)?;
    Ok(format!("{base}/api/v1/data{path}"))
}

fn get<T: DeserializeOwned>(path: &str) -> Result<T, t::Error> {
    remote::get(url(path)?).map_err(t::Error::from)
}

fn post<T: DeserializeOwned>(path: &str, body: serde_json::Value) -> Result<T, t::Error> {
    remote::post(url(path)?, &body).map_err(t::Error::from)
}

/// A POST of an admin operation, with the `admin_token` this component inherits.
fn admin<T: DeserializeOwned>(
    path: &str,
    body: Vec<u8>,
    content_type: &str,
) -> Result<T, t::Error> {
    let token = spin_sdk::variables::get("admin_token").map_err(|e| {
        t::Error::from(ApiError::new(
            "configuration",
            format!("variable `admin_token`: {e}"),
        ))
    })?;
    remote::call(url(path)?, |url| {
        Request::post(url, body)
            .header("content-type", content_type)
            .header("x-admin-token", token)
            .build()
    })
    .map_err(t::Error::from)
}

/// The JSON projection of the WIT enums in kebab-case (`interval` is
/// read as market-data's [`Interval`], by its code).
#[derive(Deserialize)]
#[serde(remote = "t::Market", rename_all = "kebab-case")]
enum MarketJson {
    Tse,
    Us,
    Fx,
    Crypto,
}

#[derive(Deserialize)]
#[serde(remote = "wit::SourceKind", rename_all = "kebab-case")]
enum SourceJson {
    Bundled,
    Yahoo,
    Stooq,
    Import,
}

/// A decimal as data-service writes it (a string), or a plain number.
fn decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "a decimal is a string, not {other}"
        ))),
    }
}

#[derive(Deserialize)]
struct BarJson {
    date: String,
    ts: i64,
    #[serde(deserialize_with = "decimal")]
    open: String,
    #[serde(deserialize_with = "decimal")]
    high: String,
    #[serde(deserialize_with = "decimal")]
    low: String,
    #[serde(deserialize_with = "decimal")]
    close: String,
    volume: u64,
}

#[derive(Deserialize)]
struct SeriesJson {
    symbol: String,
    interval: Interval,
    #[serde(with = "SourceJson")]
    source: wit::SourceKind,
    as_of: String,
    cached: bool,
    stale: bool,
    bars: Vec<BarJson>,
    #[serde(default)]
    indicators: Option<market_data::indicators::IndicatorSet>,
}

impl From<SeriesJson> for wit::BarSeries {
    fn from(s: SeriesJson) -> Self {
        Self {
            symbol: s.symbol,
            interval: s.interval.into(),
            source: s.source,
            as_of: s.as_of,
            cached: s.cached,
            stale: s.stale,
            bars: s
                .bars
                .into_iter()
                .map(|b| t::Bar {
                    date: b.date,
                    ts: b.ts,
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                })
                .collect(),
            indicators: s.indicators.map(Into::into),
        }
    }
}

#[derive(Deserialize)]
struct ClosesJson {
    symbol: String,
    interval: Interval,
    #[serde(with = "SourceJson")]
    source: wit::SourceKind,
    closes: Vec<f64>,
    volumes: Vec<u64>,
    days: u32,
}

impl From<ClosesJson> for wit::ClosesVolumes {
    fn from(c: ClosesJson) -> Self {
        Self {
            symbol: c.symbol,
            interval: c.interval.into(),
            source: c.source,
            closes: c.closes,
            volumes: c.volumes,
            days: c.days,
        }
    }
}

#[derive(Deserialize)]
struct ErrorJson {
    code: String,
    message: String,
}

/// One symbol's answer in a batch: `ok` or its `error`.
#[derive(Deserialize)]
struct EachJson<T> {
    symbol: String,
    #[serde(default = "Option::default")]
    ok: Option<T>,
    #[serde(default)]
    error: Option<ErrorJson>,
}

#[derive(Deserialize)]
struct BatchJson<T> {
    results: Vec<EachJson<T>>,
}

impl<T> BatchJson<T> {
    fn into_wit<W: From<T>>(self) -> Vec<Result<W, t::Error>> {
        self.results
            .into_iter()
            .map(|each| match (each.ok, each.error) {
                (Some(ok), _) => Ok(W::from(ok)),
                (None, e) => {
                    let e = e.unwrap_or_else(|| ErrorJson {
                        code: "upstream-malformed".into(),
                        message: "neither `ok` nor `error`".into(),
                    });
                    Err(t::Error {
                        code: e.code,
                        message: e.message,
                        details: Some(vec![("symbol".into(), each.symbol)]),
                    })
                }
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct SessionJson {
    date: String,
    open: String,
    close: String,
    #[serde(default)]
    closing_auction: Option<String>,
}

impl From<SessionJson> for wit::Session {
    fn from(s: SessionJson) -> Self {
        Self {
            date: s.date,
            open: s.open,
            close: s.close,
            closing_auction: s.closing_auction,
        }
    }
}

#[derive(Deserialize)]
struct ClockJson {
    mode: String,
    as_of: String,
    local: String,
    #[serde(with = "MarketJson")]
    market: t::Market,
    interval: Interval,
    date: String,
    #[serde(default)]
    session: Option<SessionJson>,
    next_session: SessionJson,
}

impl From<ClockJson> for wit::MarketClock {
    fn from(c: ClockJson) -> Self {
        Self {
            mode: c.mode,
            as_of: c.as_of,
            local: c.local,
            market: c.market,
            interval: c.interval.into(),
            date: c.date,
            session: c.session.map(Into::into),
            next_session: c.next_session.into(),
        }
    }
}

#[derive(Deserialize)]
struct FeaturesJson {
    symbol: String,
    date: String,
    interval: Interval,
    #[serde(default)]
    at: Option<String>,
    names: Vec<String>,
    values: Vec<f64>,
}

impl From<FeaturesJson> for wit::FeatureVector {
    fn from(f: FeaturesJson) -> Self {
        Self {
            symbol: f.symbol,
            date: f.date,
            interval: f.interval.into(),
            at: f.at,
            names: f.names,
            values: f.values,
        }
    }
}

/// One symbol of `POST /batch-features`: its features, or its error (a
/// batch answer lists features as they are, not under `ok`).
#[derive(Deserialize)]
#[serde(untagged)]
enum FeatureEachJson {
    Err { symbol: String, error: ErrorJson },
    Ok(FeaturesJson),
}

#[derive(Deserialize)]
struct FeatureBatchJson {
    results: Vec<FeatureEachJson>,
}

#[derive(Deserialize)]
struct ImportedJson {
    symbol: String,
    interval: Interval,
    bars: u32,
    from: String,
    to: String,
    #[serde(default)]
    derived: bool,
}

#[derive(Deserialize)]
struct ImportAnswer {
    imported: Vec<ImportedJson>,
}

#[derive(Deserialize)]
struct SymbolsJson {
    symbols: Vec<String>,
}

impl wit::Guest for Remote {
    fn import_bars(
        csv: Vec<u8>,
        interval: t::Interval,
        symbol: Option<String>,
    ) -> Result<Vec<wit::ImportedSeries>, t::Error> {
        let path = format!(
            "/import{}",
            remote::query(&[
                ("interval", Some(interval_code(interval))),
                ("symbol", symbol.as_deref()),
            ])
        );
        let answer: ImportAnswer = admin(&path, csv, "text/csv")?;
        Ok(answer
            .imported
            .into_iter()
            .map(|s| wit::ImportedSeries {
                symbol: s.symbol,
                interval: s.interval.into(),
                bars: s.bars,
                from: s.from,
                to: s.to,
                derived: s.derived,
            })
            .collect())
    }

    fn bars(q: wit::BarQuery) -> Result<wit::BarSeries, t::Error> {
        let path = format!(
            "/stocks/{}{}",
            remote::segment(&q.symbol),
            remote::query(&[
                ("interval", Some(interval_code(q.interval))),
                ("from", q.from.as_deref()),
                ("to", q.to.as_deref()),
                ("include_features", q.include_features.then_some("true")),
            ])
        );
        get::<SeriesJson>(&path).map(Into::into)
    }

    fn batch_fetch(
        symbols: Vec<String>,
        interval: Option<t::Interval>,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<Vec<Result<wit::BarSeries, t::Error>>, t::Error> {
        let body = serde_json::json!({
            "symbols": symbols,
            "interval": interval.map(interval_code),
            "from": from,
            "to": to,
        });
        post::<BatchJson<SeriesJson>>("/batch-fetch", body).map(BatchJson::into_wit)
    }

    fn closes(
        symbols: Vec<String>,
        interval: t::Interval,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<Vec<Result<wit::ClosesVolumes, t::Error>>, t::Error> {
        let body = serde_json::json!({
            "symbols": symbols,
            "interval": interval_code(interval),
            "from": from,
            "to": to,
        });
        post::<BatchJson<ClosesJson>>("/closes", body).map(BatchJson::into_wit)
    }

    fn symbols() -> Result<Vec<String>, t::Error> {
        get::<SymbolsJson>("/symbols").map(|s| s.symbols)
    }

    fn features(
        symbol: String,
        date: Option<String>,
        interval: Option<t::Interval>,
    ) -> Result<wit::FeatureVector, t::Error> {
        let path = format!(
            "/features/{}{}",
            remote::segment(&symbol),
            remote::query(&[
                ("date", date.as_deref()),
                ("interval", interval.map(interval_code)),
            ])
        );
        get::<FeaturesJson>(&path).map(Into::into)
    }

    fn batch_features(
        symbols: Vec<String>,
        date: Option<String>,
        interval: Option<t::Interval>,
    ) -> Result<Vec<Result<wit::FeatureVector, t::Error>>, t::Error> {
        let body = serde_json::json!({
            "symbols": symbols,
            "date": date,
            "interval": interval.map(interval_code),
        });
        let answer: FeatureBatchJson = post("/batch-features", body)?;
        Ok(answer
            .results
            .into_iter()
            .map(|each| match each {
                FeatureEachJson::Ok(f) => Ok(f.into()),
                FeatureEachJson::Err { symbol, error } => Err(t::Error {
                    code: error.code,
                    message: error.message,
                    details: Some(vec![("symbol".into(), symbol)]),
                }),
            })
            .collect())
    }

    fn clock() -> Result<wit::MarketClock, t::Error> {
        get::<ClockJson>("/clock").map(Into::into)
    }

    fn advance_clock(by: wit::ClockStep) -> Result<wit::MarketClock, t::Error> {
        let by = match by {
            wit::ClockStep::Bar => "bar",
            wit::ClockStep::Session => "session",
            wit::ClockStep::Day => "day",
        };
        let path = format!("/clock/advance?by={by}");
        admin::<ClockJson>(&path, Vec::new(), "application/json").map(Into::into)
    }

    fn health() -> t::HealthReport {
        url("/health")
            .and_then(|url| remote::get::<Health>(url).map_err(t::Error::from))
            .map_or_else(
                |e| unreachable_health("data-service", &ApiError::new(&e.code, e.message)),
                Into::into,
            )
    }

    fn version() -> t::VersionInfo {
        get::<Version>("/version")
            .unwrap_or_else(|e| Version {
                service: "data-service".into(),
                version: format!("unknown ({})", e.code),
                contract: String::new(),
            })
            .into()
    }
}
