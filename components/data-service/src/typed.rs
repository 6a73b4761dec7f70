//! The typed export `daytrade:platform/data`: what a component composed with
//! this one calls instead of HTTP. Each function makes the same library call
//! as its route in `dispatch`, and converts the answer to the WIT types
//! generated from `wit/` (the one source of truth for both).
//!
//! A typed caller is a component the deployment linked to this one (a
//! `[component.x.dependencies]` entry), so the operations an HTTP caller
//! needs the admin token for (`import-bars`, `advance-clock`) are open to it:
//! the deployer chose it.

use chrono::{DateTime, NaiveDate, Utc};
use market_data::Interval;
use market_data::clock::{ClockView, Step};
use market_data::exchange::SessionTimes;
use market_data::features::FeatureVector;
use market_data::service::{Bars, Closes, ImportedSeries, ServiceError};
use market_data::source::SourceKind;
use spin_adapter::Route;

use crate::Context;

wit_bindgen::generate!({
    world: "data-service",
    path: "../../wit",
    with: {
        "daytrade:platform/types@0.1.0": daytrade_bindings::types,
    },
});

pub(crate) use daytrade_bindings::types as t;
pub(crate) use exports::daytrade::platform::data as wit;

pub(crate) struct Typed;

export!(Typed);

fn error(code: &str, message: impl Into<String>) -> t::Error {
    t::Error {
        code: code.to_string(),
        message: message.into(),
        details: None,
    }
}

fn from_route(route: Route) -> t::Error {
    match route {
        Route::Error(_, e) => error(&e.code, e.message),
        _ => error("internal", "the operation gave no typed answer"),
    }
}

fn from_service(e: &ServiceError) -> t::Error {
    error(e.code(), e.to_string())
}

fn of_symbol(symbol: &str, e: &ServiceError) -> t::Error {
    t::Error {
        details: Some(vec![("symbol".into(), symbol.to_string())]),
        ..from_service(e)
    }
}

fn wit_source(s: SourceKind) -> wit::SourceKind {
    match s {
        SourceKind::Bundled => wit::SourceKind::Bundled,
        SourceKind::Yahoo => wit::SourceKind::Yahoo,
        SourceKind::Stooq => wit::SourceKind::Stooq,
        SourceKind::Import => wit::SourceKind::Import,
    }
}

/// A WIT `date` (`YYYY-MM-DD`), or `invalid-<field>`.
fn date(field: &str, raw: Option<String>) -> Result<Option<NaiveDate>, t::Error> {
    raw.map(|s| crate::parse_date(field, &s).map_err(from_route))
        .transpose()
}

/// An instant as the JSON projection writes it (`2010-08-20T20:00:00Z`).
fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

fn session(s: SessionTimes) -> wit::Session {
    wit::Session {
        date: s.date.to_string(),
        open: instant(s.open),
        close: instant(s.close),
        closing_auction: s.closing_auction.map(instant),
    }
}

fn clock(view: ClockView) -> wit::MarketClock {
    wit::MarketClock {
        mode: view.mode.to_string(),
        as_of: instant(view.as_of),
        local: view.local,
        market: view.market.into(),
        interval: t::Interval::from(view.interval),
        date: view.date.to_string(),
        session: view.session.map(session),
        next_session: session(view.next_session),
    }
}

fn series(bars: Bars) -> wit::BarSeries {
    wit::BarSeries {
        symbol: bars.symbol.as_str().to_string(),
        interval: t::Interval::from(bars.interval),
        source: wit_source(bars.source),
        as_of: bars.as_of.to_string(),
        cached: bars.cached,
        stale: bars.stale,
        indicators: bars.indicators.map(Into::into),
        bars: bars
            .bars
            .into_iter()
            .map(|b| t::Bar {
                date: b.date.to_string(),
                ts: b.ts,
                open: b.open.to_string(),
                high: b.high.to_string(),
                low: b.low.to_string(),
                close: b.close.to_string(),
                volume: b.volume,
            })
            .collect(),
    }
}

fn closes(c: Closes) -> wit::ClosesVolumes {
    wit::ClosesVolumes {
        symbol: c.symbol.as_str().to_string(),
        interval: t::Interval::from(c.interval),
        source: wit_source(c.source),
        closes: c.closes,
        volumes: c.volumes,
        days: c.days,
    }
}

/// `features` of `symbol` on `at` bars, with when they became known.
fn feature_vector(symbol: String, features: &FeatureVector, at: Interval) -> wit::FeatureVector {
    wit::FeatureVector {
        at: crate::known_at(&symbol, features, at).map(instant),
        symbol,
        date: features.date.to_string(),
        interval: t::Interval::from(at),
        names: features.names.iter().map(|n| n.to_string()).collect(),
        values: features.values.clone(),
    }
}

fn imported(s: ImportedSeries) -> wit::ImportedSeries {
    wit::ImportedSeries {
        symbol: s.symbol,
        interval: t::Interval::from(s.interval),
        bars: u32::try_from(s.bars).unwrap_or(u32::MAX),
        from: s.from.to_string(),
        to: s.to.to_string(),
        derived: s.derived,
    }
}

/// Run one operation on a fresh [`Context`], as a route does (the import
/// folder read first), to completion: the component model call is
/// synchronous, the library's provider fetches are not.
fn with_context<T>(op: impl AsyncFnOnce(&Context) -> Result<T, t::Error>) -> Result<T, t::Error> {
    spin_sdk::http::run(async move {
        let ctx = Context::open().map_err(from_route)?;
        crate::import_files(&ctx.service()).map_err(from_route)?;
        op(&ctx).await
    })
}

type Each<T> = Vec<Result<T, t::Error>>;

/// `batch` of the symbols on the clock, each answer converted by `convert`.
fn batch<T>(
    symbols: Vec<String>,
    at: Interval,
    from: Option<String>,
    to: Option<String>,
    convert: fn(Bars) -> T,
) -> Result<Each<T>, t::Error> {
    let (from, to) = (date("from", from)?, date("to", to)?);
    with_context(async |ctx| {
        let md = ctx.service();
        let results = md
            .batch(md.clock(), &symbols, at, from, to)
            .await
            .map_err(|e| from_service(&e))?;
        Ok(results
            .into_iter()
            .map(|r| r.map(convert).map_err(|(symbol, e)| of_symbol(&symbol, &e)))
            .collect())
    })
}

impl wit::Guest for Typed {
    fn import_bars(
        csv: Vec<u8>,
        at: t::Interval,
        symbol: Option<String>,
    ) -> Result<Vec<wit::ImportedSeries>, t::Error> {
        let default = symbol
            .map(|s| crate::symbol(&s).map_err(from_route))
            .transpose()?;
        with_context(async |ctx| {
            let series = market_data::import::parse_csv(&csv, Interval::from(at), default.as_ref())
                .map_err(|e| error("invalid-csv", e.to_string()))?;
            Ok(ctx
                .service()
                .import(&series)
                .into_iter()
                .map(imported)
                .collect())
        })
    }

    fn bars(query: wit::BarQuery) -> Result<wit::BarSeries, t::Error> {
        let symbol = crate::symbol(&query.symbol).map_err(from_route)?;
        let (from, to) = (date("from", query.from)?, date("to", query.to)?);
        with_context(async |ctx| {
            let mut bars = ctx
                .service()
                .bars(&symbol, Interval::from(query.interval), from, to)
                .await
                .map_err(|e| from_service(&e))?;
            if query.include_features {
                bars = bars.with_indicators();
            }
            Ok(series(bars))
        })
    }

    fn batch_fetch(
        symbols: Vec<String>,
        at: Option<t::Interval>,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<Each<wit::BarSeries>, t::Error> {
        let at = at.map_or(Interval::OneDay, Interval::from);
        batch(symbols, at, from, to, series)
    }

    fn closes(
        symbols: Vec<String>,
        at: t::Interval,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<Each<wit::ClosesVolumes>, t::Error> {
        batch(symbols, Interval::from(at), from, to, |bars| {
            closes(bars.closes())
        })
    }

    fn symbols() -> Result<Vec<String>, t::Error> {
        let history =
            market_data::History::bundled().map_err(|e| error(e.code(), e.to_string()))?;
        Ok(history.series().iter().map(|s| s.symbol.clone()).collect())
    }

    fn features(
        symbol: String,
        on: Option<String>,
        at: Option<t::Interval>,
    ) -> Result<wit::FeatureVector, t::Error> {
        let parsed = crate::symbol(&symbol).map_err(from_route)?;
        let on = date("date", on)?;
        let at = at.map_or(Interval::OneDay, Interval::from);
        with_context(async |ctx| {
            let features = ctx
                .service()
                .features_on(&parsed, on, at)
                .await
                .map_err(|e| from_service(&e))?;
            Ok(feature_vector(symbol, &features, at))
        })
    }

    fn batch_features(
        symbols: Vec<String>,
        on: Option<String>,
        at: Option<t::Interval>,
    ) -> Result<Each<wit::FeatureVector>, t::Error> {
        let on = date("date", on)?;
        let at = at.map_or(Interval::OneDay, Interval::from);
        with_context(async |ctx| {
            let results = ctx
                .service()
                .batch_features(&symbols, on, at)
                .await
                .map_err(|e| from_service(&e))?;
            // In the order asked, each under the symbol as the caller spelled it.
            Ok(results
                .into_iter()
                .zip(&symbols)
                .map(|(r, asked)| match r {
                    Ok(features) => Ok(feature_vector(asked.clone(), &features, at)),
                    Err((symbol, e)) => Err(of_symbol(&symbol, &e)),
                })
                .collect())
        })
    }

    fn clock() -> Result<wit::MarketClock, t::Error> {
        let ctx = Context::open().map_err(from_route)?;
        let md = ctx.service();
        Ok(clock(md.clock().view(md.now)))
    }

    fn advance_clock(by: wit::ClockStep) -> Result<wit::MarketClock, t::Error> {
        let step = match by {
            wit::ClockStep::Bar => Step::Bar,
            wit::ClockStep::Session => Step::Session,
            wit::ClockStep::Day => Step::Day,
        };
        with_context(async |ctx| {
            let md = ctx.service();
            let current = md.clock();
            let next = crate::advance(current, step, current.market, md.now).map_err(from_route)?;
            md.set_clock(next);
            Ok(clock(next.view(md.now)))
        })
    }

    fn health() -> t::HealthReport {
        spin_sdk::http::run(spin_adapter::health(&crate::SERVICE, false)).into()
    }

    fn version() -> t::VersionInfo {
        spin_adapter::version(&crate::SERVICE).into()
    }
}
