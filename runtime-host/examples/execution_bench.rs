//! execution-service benchmark (release build):
//! - the domain library alone: orders/s through risk check, reservation and
//!   the ledger's compare-and-swap transaction (in-memory store), over 250
//!   days of 100 orders with finished orders archived as the component does;
//! - `GET /orders?limit=100` through the host over a history of 25,000
//!   orders (written into the host's SQLite store by the library, as the
//!   component lays them out);
//! - through the host (SQLite key-value store, data-service for prices):
//!   `POST /trade` sequentially and from 16 concurrent clients, then the
//!   paper fills of every working order when the clock moves a day;
//! - the trading cycle for the default universe (10 symbols), step by step;
//! - what each kind of credential costs a request: an API key, an HS256 JWT
//!   and an identity provider's RS256 JWT (verified against its JWKS inside
//!   the component), on the same cheap read.
//!
//! `make bench` runs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use market_data::Bar;
use serde_json::{Value, json};
use trading::book::{Context, MarketView, OrderRequest, Origin, SessionPolicy};
use trading::ledger::{Ledger, MemoryStore};
use trading::{Book, Money, OrderKind, PaperBroker, RiskLimits, Side, TimeInForce};

const TRADER: &str = "dev-trader-key";
const ADMIN_TOKEN: &str = "bench";
const JWT_SECRET: &str = "bench-jwt-secret";
const ISSUER: &str = "https://id.example.com/";

/// The identity provider's key (RSA 2048, as most issue) and its JWKS.
fn idp() -> &'static (daytrade_contract::auth::RsaPrivateKey, String) {
    static IDP: std::sync::OnceLock<(daytrade_contract::auth::RsaPrivateKey, String)> =
        std::sync::OnceLock::new();
    IDP.get_or_init(|| {
        use rand::SeedableRng;
        let key = daytrade_contract::auth::RsaPrivateKey::new(
            &mut rand::rngs::StdRng::seed_from_u64(1),
            2048,
        )
        .unwrap();
        let jwks = json!({ "keys": [daytrade_contract::auth::jwk(&key.to_public_key(), "k1")] });
        (key, jwks.to_string())
    })
}

mod support;

fn relaxed() -> RiskLimits {
    RiskLimits {
        max_position_value: Money::units(1_000_000_000),
        max_order_notional: Money::units(1_000_000_000),
        max_orders_per_minute: u32::MAX,
        max_open_positions: 1_000,
        // Positions accumulate over the 250 days, as in the earlier figures.
        flat_by_close: false,
        ..RiskLimits::default()
    }
}

fn order(i: usize) -> OrderRequest {
    OrderRequest {
        client_order_id: format!("bench-{i}"),
        symbol: "AAPL".into(),
        side: Side::Buy,
        kind: OrderKind::Market,
        time_in_force: TimeInForce::Day,
        quantity: Some(1),
        stop_loss: None,
        take_profit: None,
    }
}

/// Orders/s of `Book::submit_checked` inside ledger transactions: 100 orders
/// a day for 250 days; each day's orders fill on the next bar, finished
/// orders beyond the configured newest (25) are archived and client order
/// ids not in the book are looked up in the ledger's keys, as the component
/// does.
fn library() {
    let store = MemoryStore::default();
    let ledger = Ledger::new(
        &store,
        "book",
        Book::open(Money::units(1_000_000_000), trading::Currency::USD),
    );
    // Each figure is the mean of five days (one day's 100 orders take
    // ~60 ms: too short to read alone on a shared machine).
    let mut per_day = Vec::new();
    let mut first_days = 0.0;
    trade_days(
        &ledger,
        |_, _| (),
        |day, per, book| {
            per_day.push(per.as_secs_f64());
            if [4, 29, 249].contains(&day) {
                let mean = per_day[per_day.len() - 5..].iter().sum::<f64>() / 5.0;
                if day == 4 {
                    first_days = mean;
                }
                let bytes = serde_json::to_vec(book).map_or(0, |b| b.len());
                println!(
                    "trading library: submit in a CAS transaction, days {}-{} ({} orders placed by then, {} in the book, {} KiB): {:.1} µs/order ({:.0} orders/s, {:.2}× days 1-5; goal day 250 ≤ 1.3×)",
                    day - 3,
                    day + 1,
                    (day + 1) * 100,
                    book.orders.len(),
                    bytes / 1024,
                    mean * 1e6,
                    1.0 / mean,
                    mean / first_days
                );
            }
        },
    );
}

/// 250 days of 100 orders as the component works them: a day's first write
/// syncs (yesterday's orders fill), finished orders beyond the configured
/// newest are archived (`archive` stores each first, as the component does)
/// and notices delivered; then the day's orders come three minutes apart,
/// client order ids not in the book looked up in the ledger's keys.
/// `each_day` gets the day, its mean time per submission and the book.
fn trade_days<S: trading::CasStore>(
    ledger: &Ledger<S>,
    archive: impl Fn(&S, &trading::book::OrderRecord),
    mut each_day: impl FnMut(i64, Duration, &Book),
) {
    let price: market_data::Price = "32.08".parse().unwrap();
    let first = NaiveDate::from_ymd_opt(2009, 9, 1).unwrap();
    let keep = trading::Config::from_vars(|_| None)
        .expect("the default configuration")
        .keep_finished_orders;
    let mut bars = Vec::new();
    // NYSE trading days (AAPL's calendar): each day's orders fill on the next.
    let days = std::iter::successors(Some(first), |d| {
        Some(market_data::Market::Us.next_trading_day(*d))
    })
    .take(250);
    for (day, date) in (0..).zip(days) {
        bars.push(Bar {
            date,
            ts: market_data::Market::Us.session_open(date).timestamp(),
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 100_000_000,
        });
        let mut ctx = Context {
            fx: trading::FxRates::new(trading::Currency::USD),
            limits: relaxed(),
            broker: PaperBroker::default(),
            session_policy: SessionPolicy::Queue,
            market: MarketView {
                now: date.and_hms_opt(0, 0, 0).unwrap().and_utc(),
                ..MarketView::replay(
                    date,
                    market_data::Market::Us
                        .close_of(date)
                        .expect("a trading day"),
                    BTreeMap::from([("AAPL".to_string(), bars.clone())]),
                )
            },
        };
        let book = ledger.transact(|b| b.sync(&ctx)).unwrap().book;
        let old = book.archivable(keep);
        for record in &old {
            archive(ledger.store(), record);
        }
        let ids: Vec<String> = old.iter().map(|r| r.order.id.clone()).collect();
        let sent: Vec<u64> = book.outbox.iter().map(|(n, _)| *n).collect();
        ledger
            .transact(|b| {
                b.forget(&ids);
                b.delivered(&sent);
            })
            .unwrap();
        let started = Instant::now();
        for i in 0..100 {
            ctx.market.now += chrono::Duration::minutes(3);
            ledger
                .transact(|b| {
                    b.submit_checked(&ctx, order(day as usize * 100 + i), Origin::Api, |id| {
                        ledger.client_order(id).map_err(|e| e.to_string())
                    })
                })
                .unwrap()
                .value
                .unwrap();
        }
        each_day(day, started.elapsed() / 100, &ledger.read().unwrap());
    }
}

/// The host's SQLite key-value store (`default`), as a [`CasStore`].
struct HostSqlite(rusqlite::Connection);

impl trading::CasStore for HostSqlite {
    type Token = (String, Option<Vec<u8>>);
    type Error = rusqlite::Error;

    fn load(&self, key: &str) -> Result<trading::ledger::Snapshot<Self::Token>, Self::Error> {
        use rusqlite::OptionalExtension;
        let value: Option<Vec<u8>> = self
            .0
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1",
                [key],
                |row| row.get(0),
            )
            .optional()?;
        Ok((value.clone(), (key.to_string(), value)))
    }

    fn swap(&self, (key, seen): Self::Token, value: Vec<u8>) -> Result<bool, Self::Error> {
        let changed = match seen {
            Some(seen) => self.0.execute(
                "UPDATE spin_key_value SET value = ?3 WHERE store = 'default' AND key = ?1 AND value = ?2",
                (key, seen, value),
            )?,
            None => self.0.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)
                 ON CONFLICT(store, key) DO NOTHING",
                (key, value),
            )?,
        };
        Ok(changed == 1)
    }
}

/// 25,000 orders (250 days of 100, each filled the next day, finished ones
/// archived to `execution/orders/<id>` as the component does) written by the
/// library into a host's store; then `GET /orders?limit=100` through it.
async fn orders_history() {
    let state = tempfile::tempdir().unwrap();
    // The host creates the store's table; the library then fills it.
    drop(start(state.path()).await);
    let db = rusqlite::Connection::open(state.path().join("sqlite_key_value.db")).unwrap();
    db.execute_batch("PRAGMA synchronous = OFF").unwrap();
    let config = trading::Config::from_vars(|_| None).unwrap();
    let ledger = Ledger::new(
        HostSqlite(db),
        "execution/book",
        Book::open(config.starting_cash, trading::Currency::USD),
    );
    let started = Instant::now();
    trade_days(
        &ledger,
        |store, record| {
            store
                .0
                .execute(
                    "INSERT OR REPLACE INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)",
                    (
                        format!("execution/orders/{}", record.order.id),
                        serde_json::to_vec(record).unwrap(),
                    ),
                )
                .unwrap();
        },
        |_, _, _| (),
    );
    let written = started.elapsed();
    drop(ledger);
    let host = start(state.path()).await;
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let page: Value = client
            .get(format!(
                "http://{}/api/v1/execution/orders?limit=100",
                host.addr
            ))
            .bearer_auth(TRADER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        latencies.push(started.elapsed());
        assert_eq!(page["orders"].as_array().map(Vec::len), Some(100), "{page}");
    }
    latencies.sort();
    println!(
        "GET /orders?limit=100 with 25,000 orders in the history (written in {:.0} s): p50 {:.2} ms, p99 {:.2} ms",
        written.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

async fn start(state: &Path) -> runtime_host::RunningHost {
    let mut settings = support::settings(state);
    settings.request_timeout = Duration::from_secs(120);
    settings.engine.max_instance_memory = 128 << 20;
    for (name, value) in [
        ("admin_token", ADMIN_TOKEN),
        ("execution_max_orders_per_minute", "1000000"),
        ("execution_max_position_value", "1000000000"),
        ("execution_max_order_notional", "1000000000"),
        ("jwt_secret", JWT_SECRET),
        ("jwt_jwks", idp().1.as_str()),
        ("jwt_issuer", ISSUER),
    ] {
        settings.variables.push((name.into(), value.into()));
    }
    support::serve(&settings).await
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn trade(client: &reqwest::Client, base: &str, i: usize) -> Duration {
    let started = Instant::now();
    let resp = client
        .post(format!("{base}/api/v1/execution/trade"))
        .bearer_auth(TRADER)
        .json(&json!({ "client_order_id": format!("h-{i}"), "symbol": "AAPL", "side": "buy", "type": "market", "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    started.elapsed()
}

/// p50 of a cheap authorised read (the notification log, one entry) with
/// each kind of credential.
async fn credential_costs(client: &reqwest::Client, base: &str) {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3600;
    let claims = json!({ "sub": "bench", "role": "viewer", "iss": ISSUER, "exp": exp });
    let credentials = [
        ("API key", "dev-viewer-key".to_string()),
        (
            "HS256 JWT",
            daytrade_contract::auth::sign_jwt(
                JWT_SECRET.as_bytes(),
                "bench",
                daytrade_contract::auth::Role::Viewer,
                exp,
            ),
        ),
        (
            "RS256 JWT (JWKS)",
            daytrade_contract::auth::sign_rs256(&idp().0, "k1", &claims),
        ),
    ];
    let n = 300;
    let mut figures = Vec::new();
    for (kind, credential) in &credentials {
        let mut latencies = Vec::new();
        for i in 0..=n {
            let started = Instant::now();
            let resp = client
                .get(format!("{base}/api/v1/notifications?limit=1"))
                .bearer_auth(credential)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{kind}: {:?}", resp.text().await);
            if i > 0 {
                latencies.push(started.elapsed());
            }
        }
        latencies.sort();
        figures.push(format!("{kind} p50 {:.2} ms", percentile(&latencies, 0.5)));
    }
    println!(
        "GET /notifications?limit=1 by credential, {n} each: {}",
        figures.join(", ")
    );
}

#[tokio::main]
async fn main() {
    library();
    orders_history().await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path()).await;
    let base = format!("http://{}", host.addr);
    trade(&client, &base, 0).await;
    credential_costs(&client, &base).await;

    let n = 300;
    let started = Instant::now();
    let mut latencies = Vec::new();
    for i in 1..=n {
        latencies.push(trade(&client, &base, i).await);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "POST /trade, one client, {n} orders: {:.0} orders/s, p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    let clients = 16;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for k in 0..n / clients {
                    out.push(trade(&client, &base, 10_000 + c * 1_000 + k).await);
                }
                out
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "POST /trade, {clients} clients, {} orders (every one a compare-and-swap on one book): {:.0} orders/s, p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    let resp = client
        .post(format!("{base}/api/v1/data/clock/advance"))
        .header("x-admin-token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let started = Instant::now();
    let status: Value = client
        .post(format!("{base}/api/v1/execution/sync"))
        .bearer_auth(TRADER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "paper fills of {} working orders on the next bar (one POST /sync): {:.1} ms; working after: {}",
        status["orders"],
        started.elapsed().as_secs_f64() * 1e3,
        status["working_orders"]
    );
    drop(host);

    // The cycle, on a fresh account inside the S&P 500 window.
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path()).await;
    let base = format!("http://{}", host.addr);
    let resp = client
        .put(format!("{base}/api/v1/data/clock"))
        .header("x-admin-token", ADMIN_TOKEN)
        .json(&json!({ "mode": "replay", "as_of": "2010-05-03" }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let days = 10;
    let mut totals = Vec::new();
    let mut steps: BTreeMap<String, f64> = BTreeMap::new();
    for _ in 0..days {
        let started = Instant::now();
        let cycle: Value = client
            .post(format!("{base}/api/v1/execution/cycle"))
            .bearer_auth(TRADER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        totals.push(started.elapsed());
        for step in cycle["steps"].as_array().unwrap() {
            if let Some(ms) = step["ms"].as_f64() {
                *steps
                    .entry(step["step"].as_str().unwrap().to_string())
                    .or_default() += ms;
            }
        }
        client
            .post(format!("{base}/api/v1/data/clock/advance"))
            .header("x-admin-token", ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
    }
    totals.sort();
    let breakdown: Vec<String> = steps
        .iter()
        .map(|(name, ms)| format!("{name} {:.1} ms", ms / days as f64))
        .collect();
    println!(
        "POST /cycle, default universe (10 of 525 screened), {days} replayed days: p50 {:.1} ms, max {:.1} ms; mean per step: {}",
        percentile(&totals, 0.5),
        percentile(&totals, 1.0),
        breakdown.join(", ")
    );
}
