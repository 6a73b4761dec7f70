//! The `execution-service` component: Spin's HTTP trigger in front of [`trading`].
//!
//! Routes (below `/api/v1/execution`), with the role each needs:
//! `POST /trade` (trader), `GET /orders[?status&symbol&date&limit&after]`
//! (pages by cursor), `GET /orders/{id}` with its event history (viewer),
//! `DELETE /orders/{id}` (trader),
//! `GET /positions`, `GET /pnl`, `GET /status` (viewer),
//! `POST /sync` (trader), `POST /cycle` (trader),
//! `POST /trading-state {state, reason}` (admin), `GET /metrics` (open,
//! Prometheus text).
//!
//! Every write works the book up to data-service's clock first (bars the
//! working orders and exits have not seen), inside the same compare-and-swap
//! transaction as the operation itself (see [`trading::ledger`]), then
//! delivers notices and archives finished orders. Reads are reads: a `GET`
//! loads the book as the last write left it and says when that was
//! (`synced`); it never calls data-service, never writes. `POST /sync`
//! brings the book up to the clock without doing anything else.

// `#[http_component]` expands to the canonical-ABI export, which is unsafe code.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{NaiveDate, Utc};
use daytrade_contract::ServiceId;
use market_data::{Bar, Interval};
use serde::{Deserialize, Serialize};
use spin_adapter::{
    Query, Role, Route, Service, authorize, get_json, json_body, json_value, path_info, post_json,
    upstream_url,
};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

wit_bindgen::generate!({
    world: "execution-imports",
    path: "../../wit",
    with: {
        "daytrade:platform/types@0.1.0": daytrade_bindings::types,
    },
});

use daytrade::platform::data;
use daytrade_bindings::types as t;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};
use trading::book::{Context, MarketView, OrderRecord, OrderRequest, Origin};
use trading::cycle::{CycleRequest, Signal};
use trading::ledger::{CasStore, Ledger, LedgerError, Snapshot};
use trading::{Book, Config, OrderStatus, PaperBroker, SubmitError, TradingState};

static SERVICE: Service = Service {
    id: trading::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    upstreams: trading::UPSTREAMS,
    check_config: Some(check_config),
};

/// The key of the account's book in the store.
const BOOK_KEY: &str = "execution/book";
/// When a write last brought the book up to the market clock ([`Synced`]).
const SYNCED_KEY: &str = "execution/synced";
/// data-service's batch limit.
const DATA_BATCH: usize = 50;

#[http_component]
async fn handle(req: Request) -> Response {
    spin_adapter::serve(&SERVICE, req, route).await
}

async fn route(req: Request) -> Route {
    match dispatch(req).await {
        Ok(route) | Err(route) => route,
    }
}

/// Spin's key-value store through `wasi:keyvalue/atomics` (compare-and-swap).
struct SpinCas {
    bucket: store::Bucket,
}

impl CasStore for SpinCas {
    type Token = atomics::Cas;
    type Error = String;

    fn load(&self, key: &str) -> Result<Snapshot<atomics::Cas>, String> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(|e| format!("{e:?}"))?;
        let current = cas.current().map_err(|e| format!("{e:?}"))?;
        Ok((current, cas))
    }

    fn swap(&self, cas: atomics::Cas, value: Vec<u8>) -> Result<bool, String> {
        match atomics::swap(cas, &value) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(format!("{e:?}")),
        }
    }
}

fn check_config() -> Result<(), String> {
    Config::from_vars(|name| spin_sdk::variables::get(name).ok())?;
    spin_adapter::check_auth_config()
}

fn config() -> Result<Config, Route> {
    Config::from_vars(|name| spin_sdk::variables::get(name).ok())
        .map_err(|e| Route::error(500, "configuration", e))
}

fn ledger(config: &Config) -> Result<Ledger<SpinCas>, Route> {
    let bucket = store::open("default")
        .map_err(|e| Route::error(500, "store-unavailable", format!("{e:?}")))?;
    Ok(Ledger::new(
        SpinCas { bucket },
        BOOK_KEY,
        Book::open(config.starting_cash, config.fx.base),
    ))
}

fn ledger_failed(e: LedgerError) -> Route {
    let status = match e {
        LedgerError::Contention => 503,
        _ => 500,
    };
    Route::error(status, e.code(), e.to_string())
}

/// What the book needs of data-service's clock: live or replay, the last
/// complete trading day of the clock's market (`date`), the instant (the
/// decision time) and the interval of the bars it works on.
#[derive(Clone)]
struct ClockView {
    mode: String,
    date: NaiveDate,
    as_of: chrono::DateTime<Utc>,
    interval: Interval,
}

/// data-service's error as this service answers it ([`spin_adapter::typed_status`]).
fn upstream(e: t::Error) -> Route {
    spin_adapter::typed_error(&e.code, e.message)
}

fn malformed(what: &str) -> Route {
    Route::error(502, "upstream-malformed", format!("data-service's {what}"))
}

/// The market clock, by the typed `data` import.
fn clock() -> Result<ClockView, Route> {
    let clock = data::clock().map_err(upstream)?;
    Ok(ClockView {
        date: clock.date.parse().map_err(|_| malformed("clock date"))?,
        as_of: chrono::DateTime::parse_from_rfc3339(&clock.as_of)
            .map_err(|_| malformed("clock instant"))?
            .to_utc(),
        interval: clock.interval.into(),
        mode: clock.mode,
    })
}

/// A bar of the typed import in the book's fixed-point prices.
fn bar(b: t::Bar) -> Option<Bar> {
    Some(Bar {
        date: b.date.parse().ok()?,
        ts: b.ts,
        open: b.open.parse().ok()?,
        high: b.high.parse().ok()?,
        low: b.low.parse().ok()?,
        close: b.close.parse().ok()?,
        volume: b.volume,
    })
}

/// The market as data-service shows it now, for the symbols the book holds
/// or works plus `extra`: every bar since the book last saw each symbol.
/// With `strict`, a failure for an `extra` symbol (an unknown symbol) is the
/// caller's error; otherwise, as for a held symbol, it leaves it unmarked.
fn market_view(
    book: &Book,
    extra: &[String],
    strict: bool,
    clock: Option<ClockView>,
) -> Result<MarketView, Route> {
    let mut symbols: BTreeSet<String> = book
        .portfolio
        .positions
        .keys()
        .chain(book.working_orders().map(|r| &r.order.symbol))
        .cloned()
        .collect();
    symbols.extend(extra.iter().cloned());
    // The clock's rate of each other currency in play, where data-service
    // has the pair (`USDJPY=X` on a yen account): it values the account
    // before the configured `fx_rates`.
    let base_currency = book.portfolio.currency;
    let currencies: BTreeSet<trading::Currency> = symbols
        .iter()
        .map(|s| trading::Currency::of(s))
        .chain(book.portfolio.balances.keys().copied())
        .filter(|c| *c != base_currency && c.as_str().len() == 3)
        .collect();
    symbols.extend(
        currencies
            .into_iter()
            .map(|c| format!("{c}{base_currency}=X")),
    );
    let symbols: Vec<String> = symbols.into_iter().collect();
    let mut bars = BTreeMap::new();
    let mut intervals = BTreeMap::new();
    // The clock first (unless the caller read it already): its interval is
    // the bars the book works on (a symbol without bars of that interval
    // falls back to daily ones).
    let clock = match clock {
        Some(clock) => clock,
        None => self::clock()?,
    };
    let mut pending: Vec<(Interval, Vec<String>)> = vec![(clock.interval, symbols)];
    while let Some((interval, symbols)) = pending.pop() {
        let mut daily = Vec::new();
        for chunk in symbols.chunks(DATA_BATCH) {
            // From the oldest unseen bar's day (a day early: a trading day
            // may start the UTC day before); a symbol never seen needs
            // only its last bars, from 10 days before the clock.
            let mut from: Vec<NaiveDate> = chunk
                .iter()
                .filter_map(|s| book.processed.get(s))
                .map(|t| t.date_naive() - chrono::Duration::days(1))
                .collect();
            if from.len() < chunk.len() {
                from.push(clock.date - chrono::Duration::days(10));
            }
            let from = from.iter().min().map(|d| d.to_string());
            let answers = data::batch_fetch(chunk, Some(interval.into()), from.as_deref(), None)
                .map_err(upstream)?;
            for (symbol, answer) in chunk.iter().zip(answers) {
                let series = match answer {
                    Ok(series) => series,
                    Err(e) => {
                        if e.code == "unsupported-interval" && interval != Interval::OneDay {
                            daily.push(symbol.clone());
                            continue;
                        }
                        if strict && extra.contains(symbol) {
                            let status = if e.code == "unknown-symbol" { 404 } else { 422 };
                            return Err(Route::error(status, &e.code, e.message));
                        }
                        continue;
                    }
                };
                let series: Vec<Bar> = series
                    .bars
                    .into_iter()
                    .map(bar)
                    .collect::<Option<_>>()
                    .ok_or_else(|| malformed(&format!("bars of {symbol}")))?;
                bars.insert(symbol.clone(), series);
                if interval != Interval::OneDay {
                    intervals.insert(symbol.clone(), interval);
                }
            }
        }
        if !daily.is_empty() {
            pending.push((Interval::OneDay, daily));
        }
    }
    Ok(MarketView {
        as_of: Some(clock.date),
        at: clock.as_of,
        live: clock.mode == "live",
        now: Utc::now(),
        bars,
        intervals,
    })
}

/// What [`with_book`] leaves: `op`'s value, the committed book, and the
/// configuration and ledger it worked with (for answers and the archive).
struct Booked<T> {
    value: T,
    book: Book,
    config: Config,
    ledger: Ledger<SpinCas>,
    synced: Synced,
}

/// Which order an archived client order id went to (the ledger's keys).
type Archived<'a> = &'a dyn Fn(&str) -> Result<Option<String>, String>;

/// Load the book (to know its symbols), see the market, then run `op` on
/// the synced book in one transaction; `op` may look up archived client
/// order ids (inside the transaction, so an order archived meanwhile is seen).
async fn with_book<T>(
    extra: &[String],
    strict: bool,
    op: impl Fn(&mut Book, &Context, Archived<'_>) -> T,
) -> Result<Booked<T>, Route> {
    with_book_at(None, extra, strict, op).await
}

/// [`with_book`] on a market clock the caller has read (the cycle's).
async fn with_book_at<T>(
    clock: Option<ClockView>,
    extra: &[String],
    strict: bool,
    op: impl Fn(&mut Book, &Context, Archived<'_>) -> T,
) -> Result<Booked<T>, Route> {
    let config = config()?;
    let ledger = ledger(&config)?;
    // The book as loaded now: its symbols say what to fetch, and the
    // transaction's first attempt starts from it.
    let loaded = ledger.load().map_err(ledger_failed)?;
    let market = market_view(&loaded.book, extra, strict, clock)?;
    let ctx = Context {
        fx: config.fx.clone(),
        limits: config.limits.clone(),
        broker: PaperBroker {
            model: config.fill_model.clone(),
        },
        session_policy: config.session_policy,
        market,
    };
    let archived = |id: &str| ledger.client_order(id).map_err(|e| e.to_string());
    let committed = ledger
        .transact_from(loaded, |book| {
            book.sync(&ctx);
            op(book, &ctx, &archived)
        })
        .map_err(ledger_failed)?;
    let synced = Synced {
        at: ctx.market.now,
        as_of: ctx.market.as_of,
    };
    if let Ok(encoded) = serde_json::to_vec(&synced) {
        // What a read reports as the book's age; the book itself is committed.
        let _ = ledger.store().bucket.set(SYNCED_KEY, &encoded);
    }
    let book = flush_outbox(&ledger, committed.book).await;
    let book = archive(&ledger, config.keep_finished_orders, book);
    Ok(Booked {
        value: committed.value,
        book,
        config,
        ledger,
        synced,
    })
}

/// When a write last worked the book up to the market clock: what a read shows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Synced {
    /// Wall time of that write.
    at: chrono::DateTime<Utc>,
    /// The market clock's date it saw.
    as_of: Option<NaiveDate>,
}

/// What a read sees: the book and ledger as stored, and when the book was
/// last synced (`None`: never, a new account). Nothing is written.
struct Stored {
    book: Book,
    ledger: Ledger<SpinCas>,
    config: Config,
    synced: Option<Synced>,
}

fn stored() -> Result<Stored, Route> {
    let config = config()?;
    let ledger = ledger(&config)?;
    let book = ledger.read().map_err(ledger_failed)?;
    let synced = ledger
        .store()
        .bucket
        .get(SYNCED_KEY)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    Ok(Stored {
        book,
        ledger,
        config,
        synced,
    })
}

/// The number of an order id (`ord-00000042` is 42).
fn order_number(id: &str) -> Option<u64> {
    id.strip_prefix("ord-")
        .filter(|digits| digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
}

/// Order ids `GET /orders` looks through at most (newest first).
const ORDER_SCAN: u64 = 5_000;
/// Finished orders leave the book in batches of at least this many.
const ARCHIVE_BATCH: usize = 10;
/// Orders archived per request at most.
const ARCHIVE_LIMIT: usize = 200;

fn archive_key(id: &str) -> String {
    format!("execution/orders/{id}")
}

/// Move finished orders beyond the newest `keep` out of the book: each is
/// written to its own key first, then dropped from the book in a
/// transaction, so at every moment an order is in the book, the archive or
/// both — never neither.
fn archive(ledger: &Ledger<SpinCas>, keep: usize, book: Book) -> Book {
    let records = book.archivable(keep);
    if records.len() < ARCHIVE_BATCH {
        return book;
    }
    let mut ids = Vec::new();
    for record in records.into_iter().take(ARCHIVE_LIMIT) {
        let Ok(encoded) = serde_json::to_vec(record) else {
            break;
        };
        if ledger
            .store()
            .bucket
            .set(&archive_key(&record.order.id), &encoded)
            .is_err()
        {
            break;
        }
        ids.push(record.order.id.clone());
    }
    match ledger.transact(|b| b.forget(&ids)) {
        Ok(committed) => committed.book,
        Err(_) => book,
    }
}

/// An order from the book, or else from the archive.
fn find_order(ledger: &Ledger<SpinCas>, book: &Book, id: &str) -> Option<OrderRecord> {
    if let Some(record) = book.orders.get(id) {
        return Some(record.clone());
    }
    let bytes = ledger.store().bucket.get(&archive_key(id)).ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Notices delivered per request at most; the rest wait for the next one.
const FLUSH_LIMIT: usize = 20;

/// Hand the book's pending notices to notification-service and drop from
/// the outbox the ones it has taken: accepted (202, or 200, with the
/// notification's id: it owns delivery from there, at least once) or
/// refused as invalid (400 or 422: it never will take it; logged). Anything
/// else (a 5xx, no answer, 401/403/429: a configuration or load problem)
/// leaves the notice for the next write or sync: nothing accepted is lost.
async fn flush_outbox(ledger: &Ledger<SpinCas>, book: Book) -> Book {
    if book.outbox.is_empty() {
        return book;
    }
    let Ok(base) = upstream_url(&ServiceId::NOTIFICATION) else {
        return book;
    };
    let var = |name: &str| spin_sdk::variables::get(name).unwrap_or_default();
    let (key, public) = (var("notification_api_key"), var("public_url"));
    let mut done = Vec::new();
    for (seq, notice) in book.outbox.iter().take(FLUSH_LIMIT) {
        let body = trading::notices::notification(*seq, notice, &public);
        let req = Request::post(
            format!("{base}/api/v1/notifications/send"),
            body.to_string(),
        )
        .header("content-type", "application/json")
        // `x-api-key`, not `Authorization: Bearer`: the mesh reads a bearer
        // value as a JWT and refuses an API key there.
        .header("x-api-key", key.as_str())
        .build();
        match spin_sdk::http::send::<_, Response>(req).await {
            Ok(resp) if accepted(&resp) => done.push(*seq),
            Ok(resp) if matches!(*resp.status(), 400 | 422) => {
                eprintln!(
                    "execution-service: notice {seq} refused: {}",
                    String::from_utf8_lossy(resp.body())
                );
                done.push(*seq);
            }
            _ => break,
        }
    }
    if done.is_empty() {
        return book;
    }
    match ledger.transact(|b| b.delivered(&done)) {
        Ok(committed) => committed.book,
        Err(_) => book,
    }
}

/// notification-service took the notice: a 2xx naming the notification.
fn accepted(resp: &Response) -> bool {
    matches!(*resp.status(), 200 | 202)
        && serde_json::from_slice::<serde_json::Value>(resp.body())
            .is_ok_and(|body| body["id"].as_str().is_some_and(|id| id.starts_with("ntf-")))
}

/// The longest reason a trading-state change may give.
const MAX_REASON_CHARS: usize = 500;

async fn dispatch(req: Request) -> Result<Route, Route> {
    let path = path_info(&SERVICE, &req);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (Method::Post, ["trade"]) => {
            authorize(&req, Role::Trader)?;
            Query::none(&req)?;
            let body: serde_json::Value = json_body(req.body())?;
            let fields = body
                .as_object()
                .ok_or_else(|| Route::error(400, "invalid-json", "an order is a JSON object"))?;
            if let Some(unknown) = fields
                .keys()
                .find(|k| !OrderRequest::FIELDS.contains(&k.as_str()))
            {
                return Err(Route::error(
                    400,
                    "unknown-field",
                    format!(
                        "unknown field `{unknown}`, expected one of {:?}",
                        OrderRequest::FIELDS
                    ),
                ));
            }
            // A price field of another order type would be dropped unseen.
            let kind = fields.get("type").and_then(serde_json::Value::as_str);
            let belongs: [(&str, &[&str]); 4] = [
                ("limit_price", &["limit", "stop-limit"]),
                ("stop_price", &["stop", "stop-limit"]),
                ("trail_amount", &["trailing-stop"]),
                ("trail_bps", &["trailing-stop"]),
            ];
            for (field, types) in belongs {
                if fields.contains_key(field) && !kind.is_some_and(|k| types.contains(&k)) {
                    return Err(Route::error(
                        400,
                        &format!("invalid-{field}"),
                        format!(
                            "`{field}` belongs to a {} order, not to `{}`",
                            types.join(" or "),
                            kind.unwrap_or("an order without a type")
                        ),
                    ));
                }
            }
            let request: OrderRequest = json_value(body)?;
            trade(request).await
        }
        (Method::Get, ["orders"]) => {
            authorize(&req, Role::Viewer)?;
            let query = Query::of(&req, &["status", "symbol", "limit", "after", "date"])?;
            let status = query.get("status");
            if let Some(asked) = status
                && asked != "open"
                && serde_json::from_value::<OrderStatus>(serde_json::json!(asked)).is_err()
            {
                return Err(Route::error(
                    400,
                    "invalid-status",
                    format!(
                        "status `{asked}` is not one of open, new, accepted, partially-filled, \
                         filled, cancelled, rejected, expired"
                    ),
                ));
            }
            let symbol = query.get("symbol");
            if let Some(asked) = symbol {
                match market_data::Symbol::parse(asked) {
                    Ok(parsed) if parsed.as_str() == asked => {}
                    Ok(parsed) => {
                        return Err(Route::error(
                            400,
                            "invalid-symbol",
                            format!("write the symbol as `{parsed}`, not `{asked}`"),
                        ));
                    }
                    Err(e) => return Err(Route::error(400, "invalid-symbol", e.to_string())),
                }
            }
            let limit = match query.get("limit") {
                None => 100,
                Some(raw) => raw
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1_000).contains(n))
                    .ok_or_else(|| {
                        Route::error(
                            400,
                            "invalid-limit",
                            format!("limit `{raw}` is not 1 to 1000"),
                        )
                    })?,
            };
            let after = match query.get("after") {
                None => None,
                Some(raw) => Some(order_number(raw).ok_or_else(|| {
                    Route::error(
                        400,
                        "invalid-after",
                        format!("`after` is an order id such as ord-00000042, got `{raw}`"),
                    )
                })?),
            };
            let date = query
                .get("date")
                .map(|raw| {
                    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
                        Route::error(
                            400,
                            "invalid-date",
                            format!("`date` must be YYYY-MM-DD, got `{raw}`"),
                        )
                    })
                })
                .transpose()?;
            let Stored {
                book,
                ledger,
                synced,
                ..
            } = stored()?;
            let wanted = |r: &OrderRecord| {
                symbol.is_none_or(|s| r.order.symbol == s)
                    && date.is_none_or(|d| r.as_of == d)
                    && status.is_none_or(|s| match s {
                        "open" => r.order.status.is_open(),
                        s => status_name(r.order.status) == s,
                    })
            };
            // Newest first, below the cursor, from the book or the archive
            // (working orders are all in the book: `status=open` never reads
            // the archive). A page looks through at most ORDER_SCAN ids;
            // `next` is where the next page starts, `null` at the oldest.
            let mut orders = Vec::new();
            let newest = book.next_order.saturating_sub(1);
            let top = after.map_or(newest, |n| n.saturating_sub(1).min(newest));
            let mut last_seen = None;
            for n in (top.saturating_sub(ORDER_SCAN - 1).max(1)..=top).rev() {
                last_seen = Some(n);
                let id = format!("ord-{n:08}");
                let record = match book.orders.get(&id) {
                    Some(record) => Some(record.clone()),
                    None if status == Some("open") => None,
                    None => find_order(&ledger, &book, &id),
                };
                if let Some(record) = record.filter(|r| wanted(r)) {
                    orders.push(record);
                    if orders.len() == limit {
                        break;
                    }
                }
            }
            let next = last_seen
                .filter(|n| *n > 1 && status != Some("open"))
                .map(|n| format!("ord-{n:08}"));
            Ok(Route::ok(
                serde_json::json!({ "orders": orders, "next": next, "synced": synced }),
            ))
        }
        (Method::Get, ["orders", id]) => {
            authorize(&req, Role::Viewer)?;
            Query::none(&req)?;
            let Stored { book, ledger, .. } = stored()?;
            let record = find_order(&ledger, &book, id)
                .ok_or_else(|| Route::error(404, "order-not-found", format!("no order `{id}`")))?;
            // Its whole history: the events that made it what it is.
            let mut history = Vec::new();
            for sequence in &record.events {
                let event = ledger.event(&book, *sequence).map_err(ledger_failed)?;
                let mut entry = serde_json::to_value(&event).unwrap_or_default();
                entry["sequence"] = serde_json::json!(sequence);
                history.push(entry);
            }
            let mut body = serde_json::to_value(&record).unwrap_or_default();
            body["history"] = serde_json::Value::Array(history);
            Ok(Route::ok(body))
        }
        (Method::Patch, ["orders", id]) => {
            authorize(&req, Role::Trader)?;
            Query::none(&req)?;
            let change: trading::book::Modify = json_value(json_body(req.body())?)?;
            if change == trading::book::Modify::default() {
                return Err(Route::error(
                    400,
                    "invalid-json",
                    "a modification names at least one of quantity, limit_price, stop_price, \
                     trail_amount, trail_bps, stop_loss, take_profit",
                ));
            }
            let Booked { value, .. } =
                with_book(&[], false, |book, ctx, _| book.modify(ctx, id, &change)).await?;
            match value {
                Ok(record) => Ok(Route::ok(record)),
                Err(e) => Err(Route::error(e.status(), e.code(), e.to_string())),
            }
        }
        (Method::Delete, ["orders", id]) => {
            authorize(&req, Role::Trader)?;
            Query::none(&req)?;
            let Booked { value, .. } = with_book(&[], false, |book, _, _| book.cancel(id)).await?;
            match value {
                Ok(record) => Ok(Route::ok(record)),
                Err(trading::book::CancelError::NotFound) => Err(Route::error(
                    404,
                    "order-not-found",
                    format!("no order `{id}`"),
                )),
                Err(trading::book::CancelError::Order(e)) => {
                    Err(Route::error(409, "not-cancellable", e.to_string()))
                }
            }
        }
        (Method::Get, ["positions"]) => {
            authorize(&req, Role::Viewer)?;
            Query::none(&req)?;
            let Stored {
                book,
                config,
                synced,
                ..
            } = stored()?;
            let mut body = positions(&book, &config.fx);
            body["synced"] = serde_json::json!(synced);
            Ok(Route::ok(body))
        }
        (Method::Get, ["pnl"]) => {
            authorize(&req, Role::Viewer)?;
            Query::none(&req)?;
            let Stored {
                book,
                ledger,
                config,
                synced,
            } = stored()?;
            let curve = ledger.equity_curve(&book).map_err(ledger_failed)?;
            let mut body = pnl(&book, &config.fx, curve);
            body["synced"] = serde_json::json!(synced);
            Ok(Route::ok(body))
        }
        (Method::Get, ["status"]) => {
            authorize(&req, Role::Viewer)?;
            Query::none(&req)?;
            let stored = stored()?;
            Ok(Route::ok(status(
                &stored.book,
                &stored.config,
                stored.synced,
            )))
        }
        (Method::Post, ["sync"]) => {
            authorize(&req, Role::Trader)?;
            Query::none(&req)?;
            let Booked {
                book,
                config,
                synced,
                ..
            } = with_book(&[], false, |_, _, _| ()).await?;
            Ok(Route::ok(status(&book, &config, Some(synced))))
        }
        (Method::Post, ["trading-state"]) => {
            let principal = authorize(&req, Role::Admin)?;
            Query::none(&req)?;
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct StateRequest {
                state: TradingState,
                #[serde(default)]
                reason: String,
            }
            let asked: StateRequest = json_body(req.body())?;
            // The reason travels in the notice; notification-service takes
            // messages of up to 3,000 characters.
            if asked.reason.chars().count() > MAX_REASON_CHARS {
                return Err(Route::error(
                    400,
                    "invalid-reason",
                    format!("`reason` is at most {MAX_REASON_CHARS} characters"),
                ));
            }
            let reason = format!(
                "{} (by {})",
                if asked.reason.is_empty() {
                    "no reason given"
                } else {
                    &asked.reason
                },
                principal.subject
            );
            let Booked {
                value: changed,
                book,
                ..
            } = with_book(&[], false, |book, ctx, _| {
                book.set_state(ctx, asked.state, reason.clone())
            })
            .await?;
            Ok(Route::ok(serde_json::json!({
                "state": book.state,
                "changed": changed,
                "state_changes": book.state_changes,
            })))
        }
        (Method::Post, ["cycle"]) => {
            authorize(&req, Role::Trader)?;
            Query::none(&req)?;
            let request: CycleRequest = if req.body().is_empty() {
                CycleRequest::default()
            } else {
                json_body(req.body())?
            };
            request
                .validate()
                .map_err(|(field, e)| Route::error(400, &format!("invalid-{field}"), e))?;
            let trace_id = req
                .header("traceparent")
                .and_then(|v| v.as_str())
                .and_then(|v| v.split('-').nth(1))
                .map(str::to_string);
            run_cycle(request, trace_id).await
        }
        (Method::Get, ["metrics"]) => {
            Query::none(&req)?;
            let Stored { book, config, .. } = stored()?;
            Ok(Route::Text(
                "text/plain; version=0.0.4",
                metrics(&book, &config.fx),
            ))
        }
        _ => Ok(Route::NotFound),
    }
}

async fn trade(request: OrderRequest) -> Result<Route, Route> {
    let symbol = request.symbol.clone();
    market_data::Symbol::parse(&symbol)
        .map_err(|e| Route::error(400, "invalid-symbol", e.to_string()))?;
    let Booked {
        value,
        book,
        ledger,
        ..
    } = with_book(
        std::slice::from_ref(&symbol),
        true,
        |book, ctx, archived| book.submit_checked(ctx, request.clone(), Origin::Api, archived),
    )
    .await?;
    match value {
        Ok(submitted) => {
            let status = if submitted.replayed { 200 } else { 201 };
            let mut body = serde_json::to_value(&submitted.record).unwrap_or_default();
            body["replayed"] = serde_json::json!(submitted.replayed);
            Ok(Route::Json(status, body))
        }
        Err(SubmitError::Denied(record)) => Ok(denied(&record)),
        Err(SubmitError::Archived { order_id, .. }) => {
            let record = find_order(&ledger, &book, &order_id).ok_or_else(|| {
                Route::error(
                    500,
                    "ledger-corrupt",
                    format!("archived order {order_id} is missing"),
                )
            })?;
            if record.request != request {
                return Err(Route::error(
                    409,
                    "idempotency-conflict",
                    format!(
                        "client order id `{}` was used for a different order",
                        request.client_order_id
                    ),
                ));
            }
            if record.order.status == OrderStatus::Rejected {
                return Ok(denied(&record));
            }
            let mut body = serde_json::to_value(&record).unwrap_or_default();
            body["replayed"] = serde_json::json!(true);
            Ok(Route::Json(200, body))
        }
        Err(e) => Err(Route::error(e.status(), e.code(), e.to_string())),
    }
}

/// The 422 answer for a denied order.
fn denied(record: &OrderRecord) -> Route {
    let denial = record.denial.clone();
    Route::Json(
        422,
        serde_json::json!({
            "code": denial.as_ref().map_or("denied", |d| d.code()),
            "message": denial.as_ref().map(ToString::to_string).unwrap_or_default(),
            "denial": denial,
            "order": record,
        }),
    )
}

fn status_name(status: OrderStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The account's cash: all of it in the base currency, and each currency's.
fn cash(book: &Book, rates: &trading::FxRates) -> serde_json::Value {
    let portfolio = &book.portfolio;
    let by_currency: Vec<_> = std::iter::once((&portfolio.currency, &portfolio.cash))
        .chain(&portfolio.balances)
        .map(|(currency, amount)| {
            serde_json::json!({
                "currency": currency,
                "amount": amount,
                "rate": rates.rate(*currency),
            })
        })
        .collect();
    serde_json::json!({
        "currency": portfolio.currency,
        "total": portfolio.cash_value(rates),
        "by_currency": by_currency,
    })
}

/// The account's state, as last synced (`synced`: when). Amounts are in
/// the base currency (`currency`).
fn status(book: &Book, config: &Config, synced: Option<Synced>) -> serde_json::Value {
    let rates = book.rates(&config.fx);
    let equity = book.equity(&config.fx);
    serde_json::json!({
        "state": book.state,
        "synced": synced,
        "as_of": synced.and_then(|s| s.as_of),
        "currency": book.portfolio.currency,
        "cash": book.portfolio.cash_value(&rates),
        "balances": cash(book, &rates),
        "equity": equity,
        "peak_equity": book.peak_equity,
        "daily_pnl": book.pnl_since_day_start(equity),
        "drawdown_bps": trading::risk::drawdown_bps(equity, book.peak_equity),
        "open_positions": book.portfolio.open_positions(),
        "working_orders": book.working_orders().count(),
        "orders": book.orders.len(),
        "limits": config.limits,
        "fill_model": config.fill_model,
        "session_policy": config.session_policy,
        "state_changes": book.state_changes,
        "pending_notices": book.outbox.len(),
    })
}

/// Positions in their currency, each with its value in the base currency.
fn positions(book: &Book, configured: &trading::FxRates) -> serde_json::Value {
    let rates = book.rates(configured);
    let positions: Vec<_> = book
        .portfolio
        .positions
        .iter()
        .map(|(symbol, p)| {
            let mark = book.marks.get(symbol);
            let value =
                mark.and_then(|(_, price)| trading::book::notional(symbol, *price, p.quantity));
            let rate = rates.rate(p.currency);
            serde_json::json!({
                "symbol": symbol,
                "currency": p.currency,
                "quantity": p.quantity,
                "average_price": p.average_price(symbol),
                "cost": p.cost,
                "mark": mark.map(|(_, price)| price),
                "mark_date": mark.map(|(date, _)| date),
                "market_value": value,
                "unrealised_pnl": value.map(|v| v - p.cost),
                "rate": rate,
                "base_value": value
                    .zip(rate)
                    .and_then(|(v, r)| trading::fx::to_base(v, r)),
                "exits": book.exits.get(symbol),
            })
        })
        .collect();
    serde_json::json!({
        "positions": positions,
        "currency": book.portfolio.currency,
        "cash": book.portfolio.cash_value(&rates),
        "balances": cash(book, &rates),
    })
}

/// P&L in the base currency (`currency`).
fn pnl(
    book: &Book,
    configured: &trading::FxRates,
    equity_curve: Vec<trading::book::EquityPoint>,
) -> serde_json::Value {
    let equity = book.equity(configured);
    serde_json::json!({
        "currency": book.portfolio.currency,
        "realised": book.portfolio.realised_pnl,
        "unrealised": book.unrealised_pnl(configured),
        "commissions": book.portfolio.commissions,
        "daily": book.pnl_since_day_start(equity),
        "day": book.day_start.map(|(date, _)| date),
        "equity": equity,
        "peak_equity": book.peak_equity,
        "equity_curve": equity_curve,
    })
}

fn metrics(book: &Book, configured: &trading::FxRates) -> String {
    let equity = book.equity(configured);
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut denials: BTreeMap<&str, usize> = BTreeMap::new();
    for record in book.orders.values() {
        *by_status
            .entry(status_name(record.order.status))
            .or_default() += 1;
        if let Some(denial) = &record.denial {
            *denials.entry(denial.code()).or_default() += 1;
        }
    }
    let mut out = String::new();
    out.push_str(
        "# HELP execution_orders Orders in the ledger by status.\n# TYPE execution_orders gauge\n",
    );
    for (status, n) in &by_status {
        out.push_str(&format!("execution_orders{{status=\"{status}\"}} {n}\n"));
    }
    out.push_str("# HELP execution_denials Orders the risk engine refused, by code.\n# TYPE execution_denials gauge\n");
    for (code, n) in &denials {
        out.push_str(&format!("execution_denials{{code=\"{code}\"}} {n}\n"));
    }
    let fills: usize = book.orders.values().map(|r| r.fills.len()).sum();
    let money = |m: trading::Money| m.ticks() as f64 / market_data::Price::SCALE as f64;
    let state = match book.state {
        TradingState::Active => 0,
        TradingState::Reducing => 1,
        TradingState::Halted => 2,
    };
    for (name, help, value) in [
        ("execution_fills", "Fills in the ledger.", fills as f64),
        (
            "execution_equity",
            "Account equity at the last marks.",
            money(equity),
        ),
        (
            "execution_cash",
            "Cash, all currencies in the base currency.",
            money(book.portfolio.cash_value(&book.rates(configured))),
        ),
        (
            "execution_daily_pnl",
            "P&L since the market day's start.",
            money(book.pnl_since_day_start(equity)),
        ),
        (
            "execution_trading_state",
            "0 active, 1 reducing, 2 halted.",
            f64::from(state),
        ),
        (
            "execution_open_positions",
            "Positions with shares.",
            book.portfolio.open_positions() as f64,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    out
}

fn service_url(id: &ServiceId) -> Result<String, Route> {
    upstream_url(id).map_err(|e| Route::error(500, "configuration", e.to_string()))
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// One trading cycle: recommend → predict (features fetched by ml-service
/// from data-service, model of the market day) → plan and submit orders in
/// one ledger transaction → deliver the notices. Every call carries the
/// request's trace context, so the cycle is one trace across services.
async fn run_cycle(request: CycleRequest, trace_id: Option<String>) -> Result<Route, Route> {
    let started = Instant::now();
    let mut steps = Vec::new();

    let step = Instant::now();
    let symbols: Vec<String> = match &request.symbols {
        Some(symbols) => symbols.clone(),
        None => {
            let symbol_base = service_url(&ServiceId::SYMBOL)?;
            let recommended = get_json(&format!(
                "{symbol_base}/api/v1/symbols/recommend?limit={}",
                request.universe
            ))
            .await?;
            recommended["recommendations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["symbol"].as_str().map(str::to_string))
                .collect()
        }
    };
    steps.push(serde_json::json!({ "step": "recommend", "ms": ms(step), "symbols": symbols }));

    let step = Instant::now();
    let clock = clock()?;
    let (signals, model_version, errors) = if symbols.is_empty() {
        (Vec::new(), serde_json::Value::Null, serde_json::json!([]))
    } else {
        let body = serde_json::json!({ "symbols": symbols, "date": clock.date });
        let ml_base = service_url(&ServiceId::ML)?;
        let predicted = post_json(&format!("{ml_base}/api/v1/ml/batch-predict"), &body).await?;
        let signals: Vec<Signal> = predicted["predictions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| serde_json::from_value(p.clone()).ok())
            .collect();
        (
            signals,
            predicted["model_version"].clone(),
            predicted["errors"].clone(),
        )
    };
    steps.push(serde_json::json!({
        "step": "predict",
        "ms": ms(step),
        "as_of": clock.date,
        "model_version": model_version,
        "signals": signals,
        "errors": errors,
    }));

    let step = Instant::now();
    let candidates: Vec<String> = signals.iter().map(|s| s.symbol.clone()).collect();
    let Booked {
        value: results,
        book,
        config,
        ..
    } = with_book_at(
        Some(clock.clone()),
        &candidates,
        false,
        |book, ctx, archived| {
            // Decided at the clock the signals were predicted on: the cycle
            // reads it once.
            let as_of = ctx.market.as_of.unwrap_or(clock.date);
            let label = trading::cycle::decision_label(ctx.market.at, as_of, clock.interval);
            trading::cycle::plan(book, &signals, &label, &request)
                .into_iter()
                .map(|order| {
                    let outcome = book.submit_checked(ctx, order.clone(), Origin::Cycle, archived);
                    (order, outcome)
                })
                .collect::<Vec<_>>()
        },
    )
    .await?;
    let orders: Vec<serde_json::Value> = results
        .iter()
        .map(|(order, outcome)| {
            let mut view = serde_json::json!({
                "symbol": order.symbol,
                "side": order.side,
                "client_order_id": order.client_order_id,
            });
            match outcome {
                Ok(submitted) => {
                    view["outcome"] = if submitted.replayed {
                        "replayed"
                    } else {
                        "placed"
                    }
                    .into();
                    view["order_id"] = submitted.record.order.id.clone().into();
                    view["status"] = serde_json::json!(submitted.record.order.status);
                    view["quantity"] = submitted.record.order.quantity.into();
                }
                Err(SubmitError::Archived { order_id, .. }) => {
                    view["outcome"] = "replayed".into();
                    view["order_id"] = order_id.clone().into();
                }
                Err(e) => {
                    view["outcome"] = "denied".into();
                    view["code"] = e.code().into();
                    view["message"] = e.to_string().into();
                }
            }
            view
        })
        .collect();
    steps.push(serde_json::json!({ "step": "orders", "ms": ms(step), "orders": orders }));
    steps.push(serde_json::json!({
        "step": "notify",
        "pending_notices": book.outbox.len(),
        "state": book.state,
    }));
    Ok(Route::ok(serde_json::json!({
        "as_of": clock.date,
        "trace_id": trace_id,
        "elapsed_ms": ms(started),
        "steps": steps,
        "equity": book.equity(&config.fx),
        "currency": book.portfolio.currency,
    })))
}
