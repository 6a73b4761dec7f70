//! The `ml-service` component: Spin's HTTP trigger in front of [`forecasting`].
//!
//! Routes (below `/api/v1/ml`):
//! `POST /predict {symbol, features?, date?, model_version?}`,
//! `POST /batch-predict {symbols | rows: [{symbol, features, date?}] (≤ 100), date?, model_version?}`,
//! `GET /models`, `POST /outcomes` (resolve recorded predictions against
//! data-service's later bars), `GET /accuracy?model_version&window`,
//! `GET /metrics` (Prometheus text).
//!
//! The served version is the `model_version` variable (a v2 pod serves v2); a
//! request may name another shipped version. Features come from data-service
//! (the typed `data` import's `batch-features`) unless the caller sends them.

// `#[http_component]` expands to the canonical-ABI export, which is unsafe code.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::NaiveDate;
use forecasting::monitor::{self, Journal, Prediction};
use forecasting::{MAX_BATCH, ModelVersion, Policy, Registry, Row, Scored};
use serde::Deserialize;
use spin_adapter::{KvStore, Query, Route, Service, json_body, path_info};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::{http_component, variables};

wit_bindgen::generate!({
    world: "ml-imports",
    path: "../../wit",
    with: {
        "daytrade:platform/types@0.1.0": daytrade_bindings::types,
    },
});

use daytrade::platform::data;
use daytrade_bindings::types as t;

static SERVICE: Service = Service {
    id: forecasting::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    upstreams: forecasting::UPSTREAMS,
    check_config: None,
};

/// data-service's batch limit.
const DATA_BATCH: usize = 50;
/// Resolved predictions scored for the `ml_prediction_accuracy` gauge.
const GAUGE_WINDOW: usize = 500;

#[http_component]
async fn handle(req: Request) -> Response {
    spin_adapter::serve(&SERVICE, req, route).await
}

async fn route(req: Request) -> Route {
    match dispatch(req).await {
        Ok(route) | Err(route) => route,
    }
}

fn var(name: &str) -> Result<String, Route> {
    variables::get(name)
        .map_err(|e| Route::error(500, "configuration", format!("variable `{name}`: {e}")))
}

fn failed(e: forecasting::Error) -> Route {
    Route::error(e.status(), e.code(), e.to_string())
}

fn registry() -> Result<&'static Registry, Route> {
    Registry::embedded().map_err(|e| Route::error(500, e.code(), e.to_string()))
}

/// The version a request asked for, or the one this deployment serves.
fn version(asked: Option<&str>) -> Result<&'static ModelVersion, Route> {
    let name = match asked {
        Some(name) => name.to_string(),
        None => var("model_version")?,
    };
    registry()?.version(&name).map_err(|e| failed(e.into()))
}

fn policy() -> Result<Policy, Route> {
    let threshold = |name: &str| -> Result<f64, Route> {
        var(name)?
            .parse()
            .map_err(|_| Route::error(500, "configuration", format!("{name} is not a number")))
    };
    Policy::new(threshold("buy_threshold")?, threshold("sell_threshold")?)
        .map_err(|e| Route::error(500, "configuration", e))
}

/// data-service's error as this service answers it ([`spin_adapter::typed_status`]).
fn upstream(e: t::Error) -> Route {
    spin_adapter::typed_error(&e.code, e.message)
}

fn journal() -> Result<Journal<KvStore>, Route> {
    Ok(Journal {
        store: KvStore::open_default("ml-service")?,
    })
}

async fn dispatch(req: Request) -> Result<Route, Route> {
    let path = path_info(&SERVICE, &req);
    match (req.method(), path.as_str()) {
        (Method::Post, "/predict") => {
            Query::none(&req)?;
            predict(json_body(req.body())?).await
        }
        (Method::Post, "/batch-predict") => {
            Query::none(&req)?;
            batch_predict(json_body(req.body())?).await
        }
        (Method::Get, "/models") => {
            Query::none(&req)?;
            models()
        }
        (Method::Post, "/outcomes") => {
            Query::none(&req)?;
            resolve_outcomes()
        }
        (Method::Get, "/accuracy") => {
            let query = Query::of(&req, &["model_version", "window"])?;
            let version = version(query.get("model_version"))?;
            let window = match query.get("window") {
                None | Some("all") => None,
                Some(raw) => Some(raw.parse::<usize>().ok().filter(|w| *w > 0).ok_or_else(
                    || {
                        Route::error(
                            400,
                            "invalid-window",
                            format!("window `{raw}` is not a positive count or `all`"),
                        )
                    },
                )?),
            };
            let journal = journal()?;
            let resolved = journal.resolved(&version.name, window);
            let mut body = serde_json::to_value(monitor::accuracy(&version.name, &resolved))
                .unwrap_or_default();
            body["window"] = serde_json::json!(window);
            body["pending"] = serde_json::json!(journal.pending_count(&version.name));
            body["offline"] = version.metadata["evaluation"]["pooled"]["ensemble"].clone();
            Ok(Route::ok(body))
        }
        (Method::Get, "/metrics") => {
            Query::none(&req)?;
            Ok(Route::Text(
                "text/plain; version=0.0.4",
                metrics(&journal()?)?,
            ))
        }
        _ => Ok(Route::NotFound),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    symbol: String,
    /// The model's features in its order; fetched from data-service when absent.
    #[serde(default)]
    features: Option<Vec<f64>>,
    /// The bar to forecast from (default: data-service's clock).
    #[serde(default)]
    date: Option<NaiveDate>,
    #[serde(default)]
    model_version: Option<String>,
}

/// Either `symbols` (features from data-service at `date`) or `rows` (the
/// caller's features).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    #[serde(default)]
    symbols: Option<Vec<String>>,
    #[serde(default)]
    rows: Option<Vec<RowRequest>>,
    #[serde(default)]
    date: Option<NaiveDate>,
    #[serde(default)]
    model_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowRequest {
    symbol: String,
    features: Vec<f64>,
    #[serde(default)]
    date: Option<NaiveDate>,
}

/// Symbols are labels in keys and logs: keep them to what tickers use.
fn check_symbol(symbol: &str) -> Result<(), Route> {
    let ok = !symbol.is_empty()
        && symbol.len() <= 24
        && symbol
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '^' | '='));
    if ok {
        Ok(())
    } else {
        Err(Route::error(
            400,
            "invalid-symbol",
            format!("`{symbol}` is not a ticker symbol"),
        ))
    }
}

/// A forecast date given with the caller's own features is not after
/// data-service's clock: the features of a bar that has not closed cannot
/// exist (data-service checks the date itself when it computes them).
fn check_dates(dates: &[(&str, Option<NaiveDate>)]) -> Result<(), Route> {
    if dates.iter().all(|(_, date)| date.is_none()) {
        return Ok(());
    }
    let clock = data::clock().map_err(upstream)?;
    // The clock's last complete trading day (its `as_of` is the instant).
    let as_of: NaiveDate = clock.date.parse().map_err(|_| {
        Route::error(
            502,
            "upstream-malformed",
            "data-service's clock has no `date`",
        )
    })?;
    for (field, date) in dates {
        if let Some(date) = date.filter(|date| *date > as_of) {
            return Err(Route::error(
                400,
                &format!("invalid-{field}"),
                format!("`{field}` {date} is after the market clock ({as_of})"),
            ));
        }
    }
    Ok(())
}

async fn predict(asked: PredictRequest) -> Result<Route, Route> {
    let started = Instant::now();
    check_symbol(&asked.symbol)?;
    let version = version(asked.model_version.as_deref())?;
    let policy = policy()?;
    let row = match asked.features {
        Some(values) => {
            check_dates(&[("date", asked.date)])?;
            Row {
                symbol: asked.symbol,
                date: asked.date,
                names: None,
                values,
            }
        }
        None => {
            let mut fetched = fetch_features(std::slice::from_ref(&asked.symbol), asked.date)?;
            match fetched.pop() {
                Some(Ok(row)) => row,
                Some(Err((_, status, error))) => return Err(Route::Error(status, error)),
                None => return Err(Route::error(502, "upstream-malformed", "no features")),
            }
        }
    };
    let batch = forecasting::forecast(version, vec![row]).map_err(failed)?;
    let body = answer(version, &policy, &batch, started)?;
    Ok(Route::ok(body["predictions"][0].clone()))
}

async fn batch_predict(asked: BatchRequest) -> Result<Route, Route> {
    let started = Instant::now();
    let count = match (&asked.symbols, &asked.rows) {
        (Some(symbols), None) => symbols.len(),
        (None, Some(rows)) => rows.len(),
        _ => {
            return Err(Route::error(
                400,
                "invalid-json",
                "send either `symbols` or `rows`",
            ));
        }
    };
    if count == 0 || count > MAX_BATCH {
        return Err(failed(forecasting::Error::BatchSize(count)));
    }
    let version = version(asked.model_version.as_deref())?;
    let policy = policy()?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    if let Some(given) = asked.rows {
        let latest = given.iter().filter_map(|row| row.date).max();
        check_dates(&[("date", asked.date), ("rows.date", latest)])?;
        for row in given {
            check_symbol(&row.symbol)?;
            rows.push(Row {
                symbol: row.symbol,
                date: row.date.or(asked.date),
                names: None,
                values: row.features,
            });
        }
    } else {
        let symbols = asked.symbols.unwrap_or_default();
        for symbol in &symbols {
            check_symbol(symbol)?;
        }
        for result in fetch_features(&symbols, asked.date)? {
            match result {
                Ok(row) => rows.push(row),
                Err((symbol, _, error)) => {
                    errors.push(serde_json::json!({ "symbol": symbol, "error": error }))
                }
            }
        }
    }
    let mut body = if rows.is_empty() {
        serde_json::json!({ "model_version": version.name, "model_runs": 0, "predictions": [] })
    } else {
        let batch = forecasting::forecast(version, rows).map_err(failed)?;
        answer(version, &policy, &batch, started)?
    };
    body["errors"] = serde_json::Value::Array(errors);
    Ok(Route::ok(body))
}

/// A symbol's features, or its symbol, status and error from data-service.
type Fetched = Result<Row, (String, u16, daytrade_contract::ApiError)>;

/// Features for `symbols` at `date` from data-service, a batch at a time.
fn fetch_features(symbols: &[String], date: Option<NaiveDate>) -> Result<Vec<Fetched>, Route> {
    let date = date.map(|d| d.to_string());
    let mut out = Vec::with_capacity(symbols.len());
    for chunk in symbols.chunks(DATA_BATCH) {
        let results = data::batch_features(chunk, date.as_deref(), None).map_err(upstream)?;
        for (result, asked) in results.into_iter().zip(chunk) {
            out.push(to_row(asked, result));
        }
    }
    Ok(out)
}

fn to_row(asked: &str, result: Result<data::FeatureVector, t::Error>) -> Fetched {
    let features = match result {
        Ok(features) => features,
        Err(e) => {
            // The symbol's failure as data-service gives it: a 4xx (an
            // unknown symbol, too little history) is the caller's; anything
            // else is ours.
            let status = Some(spin_adapter::typed_status(&e.code))
                .filter(|s| (400..500).contains(s))
                .unwrap_or(502);
            return Err((
                asked.to_string(),
                status,
                daytrade_contract::ApiError::new(&e.code, e.message),
            ));
        }
    };
    match features.date.parse() {
        Ok(date) => Ok(Row {
            symbol: features.symbol,
            date: Some(date),
            names: Some(features.names),
            values: features.values,
        }),
        Err(_) => Err((
            asked.to_string(),
            502,
            daytrade_contract::ApiError::new(
                "upstream-malformed",
                "data-service features are malformed",
            ),
        )),
    }
}

/// The response for forecast rows; records every dated prediction.
fn answer(
    version: &ModelVersion,
    policy: &Policy,
    batch: &forecasting::Batch,
    started: Instant,
) -> Result<serde_json::Value, Route> {
    let journal = journal()?;
    let per_row_us = batch.inference.as_micros() as u64 / batch.scored.len().max(1) as u64;
    let predictions: Vec<serde_json::Value> = batch
        .scored
        .iter()
        .map(|scored| {
            let recorded = record(&journal, version, scored);
            prediction_view(version, policy, scored, per_row_us, recorded)
        })
        .collect();
    journal.observe_latency(&version.name, started.elapsed().as_secs_f64());
    Ok(serde_json::json!({
        "model_version": version.name,
        "model_runs": batch.runs,
        "latency_us": batch.inference.as_micros() as u64,
        "load_us": batch.load.as_micros() as u64,
        "predictions": predictions,
    }))
}

fn record(journal: &Journal<KvStore>, version: &ModelVersion, scored: &Scored) -> bool {
    let Some(date) = scored.row.date else {
        return false;
    };
    journal.record(&Prediction {
        model_version: version.name.clone(),
        snapshot: scored.snapshot.serves_from,
        symbol: scored.row.symbol.clone(),
        date,
        probability_up: scored.forecast.probability_up,
        outcome_up: None,
    });
    true
}

fn prediction_view(
    version: &ModelVersion,
    policy: &Policy,
    scored: &Scored,
    latency_us: u64,
    recorded: bool,
) -> serde_json::Value {
    let signal = policy.signal(scored.forecast.probability_up);
    serde_json::json!({
        "symbol": scored.row.symbol,
        "date": scored.row.date,
        "probability_up": scored.forecast.probability_up,
        "direction": signal.direction,
        "action": signal.action,
        "confidence": signal.confidence,
        "model_version": version.name,
        "snapshot": {
            "serves_from": scored.snapshot.serves_from,
            "file": scored.snapshot.file,
            "training_window": scored.snapshot.training_window,
        },
        "members": scored.forecast.members,
        "features_used": {
            "names": version.features,
            "values": scored.row.values,
        },
        "latency_us": latency_us,
        "recorded": recorded,
    })
}

fn models() -> Result<Route, Route> {
    let served = var("model_version")?;
    let policy = policy()?;
    let versions: Vec<serde_json::Value> = registry()?
        .versions()
        .iter()
        .map(|v| {
            serde_json::json!({
                "version": v.name,
                "served": v.name == served,
                "members": v.members,
                "features": v.features,
                "snapshots": v.snapshots,
                "metadata": v.metadata,
            })
        })
        .collect();
    Ok(Route::ok(serde_json::json!({
        "served": served,
        "policy": policy,
        "versions": versions,
    })))
}

/// Resolve pending predictions against data-service's bars: a prediction made
/// on bar D is up if the next bar's close is above D's. Bars past
/// data-service's clock do not exist yet, so those stay pending.
fn resolve_outcomes() -> Result<Route, Route> {
    let journal = journal()?;
    let pending = journal.pending();
    let mut by_symbol: BTreeMap<String, Vec<Prediction>> = BTreeMap::new();
    for p in pending {
        by_symbol.entry(p.symbol.clone()).or_default().push(p);
    }
    let mut closes: BTreeMap<String, Vec<(NaiveDate, f64)>> = BTreeMap::new();
    let symbols: Vec<String> = by_symbol.keys().cloned().collect();
    let mut failures = Vec::new();
    for chunk in symbols.chunks(DATA_BATCH) {
        let from = chunk
            .iter()
            .filter_map(|s| by_symbol[s].iter().map(|p| p.date).min())
            .min()
            .map(|d| d.to_string());
        let results = data::batch_fetch(chunk, None, from.as_deref(), None).map_err(upstream)?;
        for (result, symbol) in results.into_iter().zip(chunk) {
            match result {
                Ok(series) => {
                    let series = series
                        .bars
                        .iter()
                        .filter_map(|b| Some((b.date.parse().ok()?, b.close.parse::<f64>().ok()?)))
                        .collect();
                    closes.insert(symbol.clone(), series);
                }
                Err(e) => failures.push(serde_json::json!({
                    "symbol": symbol,
                    "error": { "code": e.code, "message": e.message },
                })),
            }
        }
    }
    let (mut resolved, mut waiting) = (0, 0);
    for (symbol, predictions) in by_symbol {
        let series = closes.get(&symbol).map(Vec::as_slice).unwrap_or_default();
        for p in predictions {
            match outcome(series, p.date) {
                Some(up) => {
                    journal.resolve(p, up);
                    resolved += 1;
                }
                None => waiting += 1,
            }
        }
    }
    Ok(Route::ok(serde_json::json!({
        "resolved": resolved,
        "pending": waiting,
        "fetch_failures": failures,
    })))
}

/// Did the session after `date` close above `date`'s close? `None` until it exists.
fn outcome(series: &[(NaiveDate, f64)], date: NaiveDate) -> Option<bool> {
    // Bars come oldest first.
    let i = series.binary_search_by_key(&date, |(d, _)| *d).ok()?;
    let next = series.get(i + 1)?;
    Some(next.1 > series[i].1)
}

/// One gauge family in the Prometheus text format, a sample per model version.
fn gauge(out: &mut String, name: &str, help: &str, samples: &[(&str, Option<f64>)]) {
    use std::fmt::Write;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (version, value) in samples {
        if let Some(value) = value {
            let _ = writeln!(out, "{name}{{model_version=\"{version}\"}} {value}");
        }
    }
}

fn metrics(journal: &Journal<KvStore>) -> Result<String, Route> {
    use std::fmt::Write;
    let versions = registry()?.versions();
    let scored: Vec<_> = versions
        .iter()
        .map(|v| monitor::accuracy(&v.name, &journal.resolved(&v.name, Some(GAUGE_WINDOW))))
        .collect();
    let per_version = |value: &dyn Fn(usize) -> Option<f64>| -> Vec<(&str, Option<f64>)> {
        versions
            .iter()
            .enumerate()
            .map(|(i, v)| (v.name.as_str(), value(i)))
            .collect()
    };
    let mut out = String::new();
    gauge(
        &mut out,
        "ml_prediction_accuracy",
        &format!("Direction hit rate of the last {GAUGE_WINDOW} resolved predictions."),
        &per_version(&|i| scored[i].hit_rate),
    );
    gauge(
        &mut out,
        "ml_prediction_auc",
        "ROC AUC of the same predictions.",
        &per_version(&|i| scored[i].auc),
    );
    gauge(
        &mut out,
        "ml_predictions_scored",
        "Resolved predictions the gauges are computed on.",
        &per_version(&|i| Some(scored[i].n as f64)),
    );
    gauge(
        &mut out,
        "ml_predictions_pending",
        "Recorded predictions waiting for their outcome.",
        &per_version(&|i| Some(journal.pending_count(&versions[i].name) as f64)),
    );
    gauge(
        &mut out,
        "ml_offline_accuracy",
        "The version's walk-forward accuracy at training time.",
        &per_version(&|i| {
            versions[i].metadata["evaluation"]["pooled"]["ensemble"]["accuracy"].as_f64()
        }),
    );
    let _ = writeln!(
        out,
        "# HELP ml_prediction_latency_seconds Predict and batch-predict requests, in the component."
    );
    let _ = writeln!(out, "# TYPE ml_prediction_latency_seconds histogram");
    for v in versions {
        journal.latency(&v.name).render(
            "ml_prediction_latency_seconds",
            &format!("model_version=\"{}\"", v.name),
            &mut out,
        );
    }
    Ok(out)
}
