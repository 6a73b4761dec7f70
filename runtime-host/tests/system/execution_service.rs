//! execution-service through the host: credentials and roles, paper fills on
//! the replay clock, bad input, denials, the kill switch, idempotency under
//! concurrency, limits across two host processes sharing a real Redis, and
//! no accepted order lost to `kill -9`.

use std::collections::HashSet;
use std::sync::Arc;

use crate::common::*;
use daytrade_contract::wit_check::assert_projects;
use market_data::Price;
use serde_json::{Value, json};
use trading::{FillModel, RiskLimits, Side};

pub(crate) const ADMIN_TOKEN: &str = "s3cret";
pub(crate) const VIEWER: &str = "dev-viewer-key";
pub(crate) const TRADER: &str = "dev-trader-key";
const ADMIN: &str = "dev-admin-key";

pub(crate) fn project(state: &std::path::Path) -> runtime_host::AppSettings {
    let mut settings = settings(&workspace_root().join("spin.toml"), state);
    // execution-service chains to all four others (the cycle); all run.
    settings.components = Vec::new();
    settings.engine.max_instance_memory = 128 << 20;
    settings
        .variables
        .push(("admin_token".into(), ADMIN_TOKEN.into()));
    settings.request_timeout = std::time::Duration::from_secs(30);
    // Each order holds an execution-service instance while it calls data-service twice.
    settings.engine.max_instances = 400;
    settings
}

/// One call with a method, a key (or none) and an optional JSON body.
pub(crate) async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method, format!("{base}{path}"));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, json)
}

/// A call that must fail with `status` and the stable `code`.
async fn expect_error(
    base: &str,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    status: u16,
    code: &str,
) {
    let (got, answer) = call(base, method.clone(), path, key, None).await;
    assert_eq!(
        (got, answer["code"].as_str()),
        (status, Some(code)),
        "{method} {path}: {answer}"
    );
}

pub(crate) async fn trade(base: &str, key: &str, order: Value) -> (u16, Value) {
    call(
        base,
        reqwest::Method::POST,
        "/api/v1/execution/trade",
        Some(key),
        Some(order),
    )
    .await
}

pub(crate) async fn view(base: &str, path: &str) -> Value {
    let (status, body) = call(base, reqwest::Method::GET, path, Some(VIEWER), None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The types of an order's events, oldest first (`GET /orders/{id}`'s history).
pub(crate) fn history_types(order: &Value) -> Vec<&str> {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

pub(crate) fn market_buy(id: &str, symbol: &str, quantity: u64) -> Value {
    json!({ "client_order_id": id, "symbol": symbol, "side": "buy", "type": "market", "quantity": quantity })
}

pub(crate) fn price(v: &Value) -> Price {
    v.as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| v.as_f64().and_then(|f| Price::from_f64(f, 4)))
        .unwrap_or_else(|| panic!("not a price: {v}"))
}

/// The bundled daily bar of `symbol` on `date`.
async fn bar(base: &str, symbol: &str, date: &str) -> Value {
    let (status, body) = call(
        base,
        reqwest::Method::GET,
        &format!("/api/v1/data/stocks/{symbol}?from={date}&to={date}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["bars"][0].clone()
}

/// `POST /sync` as a trader: the book worked up to the market clock.
pub(crate) async fn sync(base: &str) -> (u16, Value) {
    call(
        base,
        reqwest::Method::POST,
        "/api/v1/execution/sync",
        Some(TRADER),
        None,
    )
    .await
}

async fn advance_clock(base: &str) -> Value {
    crate::day_trading::advance(base, "bar").await
}

#[tokio::test]
async fn credentials_and_roles_guard_every_route_and_nothing_runs_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    use reqwest::Method;
    let order = market_buy("auth-1", "AAPL", 10);
    // (method, path, key, body, status, code)
    type Case = (
        Method,
        &'static str,
        Option<&'static str>,
        Option<Value>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/api/v1/execution/trade",
            None,
            Some(order.clone()),
            401,
            "unauthenticated",
        ),
        (
            Method::POST,
            "/api/v1/execution/trade",
            Some("wrong-key"),
            Some(order.clone()),
            401,
            "invalid-credentials",
        ),
        (
            Method::POST,
            "/api/v1/execution/trade",
            Some(VIEWER),
            Some(order.clone()),
            403,
            "forbidden",
        ),
        (
            Method::GET,
            "/api/v1/execution/orders",
            None,
            None,
            401,
            "unauthenticated",
        ),
        (
            Method::GET,
            "/api/v1/execution/positions",
            None,
            None,
            401,
            "unauthenticated",
        ),
        (
            Method::DELETE,
            "/api/v1/execution/orders/ord-00000001",
            Some(VIEWER),
            None,
            403,
            "forbidden",
        ),
        (
            Method::POST,
            "/api/v1/execution/trading-state",
            Some(TRADER),
            Some(json!({"state": "HALTED"})),
            403,
            "forbidden",
        ),
        (
            Method::POST,
            "/api/v1/execution/sync",
            Some(VIEWER),
            None,
            403,
            "forbidden",
        ),
    ];
    for (method, path, key, body, status, code) in cases {
        let (got, answer) = call(&base, method.clone(), path, key, body).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{method} {path} with {key:?}: {answer}"
        );
    }
    let orders = view(&base, "/api/v1/execution/orders").await;
    assert_eq!(
        orders["orders"],
        json!([]),
        "no refused call placed an order"
    );
    let status = view(&base, "/api/v1/execution/status").await;
    assert_eq!(
        status["state"], "ACTIVE",
        "no refused call changed the state"
    );
}

#[tokio::test]
async fn a_paper_order_fills_at_the_next_open_and_the_ledger_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);

    // The replay clock stands after the close of Friday 2010-08-20.
    let (status, placed) = trade(&base, TRADER, market_buy("buy-1", "AAPL", 100)).await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["status"], "accepted");
    // Decided at the close (16:00 EDT): it works from the next bar, Monday's.
    assert_eq!(placed["works_from"], "2010-08-20T20:00:00Z");
    assert_eq!(
        placed["expires_at"], "2010-08-23T20:00:00Z",
        "Monday's close"
    );
    assert_eq!(placed["replayed"], false);
    assert_projects(&placed, "execution", "order-record");
    let id = placed["id"].as_str().unwrap().to_string();

    advance_clock(&base).await;
    // A read shows the book as last synced: the order still works.
    let order = view(&base, &format!("/api/v1/execution/orders/{id}")).await;
    assert_eq!(order["status"], "accepted", "{order}");
    let (status, synced) = sync(&base).await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["synced"]["as_of"], "2010-08-23", "{synced}");
    assert_eq!(synced["working_orders"], 0, "{synced}");
    assert_projects(&synced, "execution", "status");
    let order = view(&base, &format!("/api/v1/execution/orders/{id}")).await;
    assert_eq!(order["status"], "filled", "{order}");
    assert_eq!(
        history_types(&order),
        ["order-placed", "order-filled"],
        "{order}"
    );
    // Monday's open plus the default 5 bps of slippage, rounded up to a tick.
    let monday = bar(&base, "AAPL", "2010-08-23").await;
    let (open, low) = (price(&monday["open"]), price(&monday["low"]));
    let model = FillModel::default();
    let entry = model.slipped(Side::Buy, open, 4);
    assert_eq!(price(&order["fills"][0]["price"]), entry);
    assert_eq!(order["fills"][0]["date"], "2010-08-23");
    assert_projects(&order, "execution", "order-record");
    assert_projects(&order["fills"][0], "execution", "execution-fill");

    // That day AAPL fell more than 2% below the entry: the automatic stop
    // sold the position inside the same bar, at the stop less slippage.
    let (stop, _) = trading::risk::exits(&RiskLimits::default(), entry, 4);
    assert!(low <= stop, "the bundled bar: low {low}, stop {stop}");
    let orders = view(&base, "/api/v1/execution/orders").await;
    let exit = orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["origin"] == "stop-loss")
        .unwrap_or_else(|| panic!("no stop-loss order in {orders}"));
    assert_eq!(exit["status"], "filled");
    assert_eq!(
        price(&exit["fills"][0]["price"]),
        model.slipped(Side::Sell, open.min(stop), 4)
    );
    let positions = view(&base, "/api/v1/execution/positions").await;
    assert_eq!(positions["positions"], json!([]));
    let pnl = view(&base, "/api/v1/execution/pnl").await;
    let curve: Vec<&str> = pnl["equity_curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["date"].as_str().unwrap())
        .collect();
    assert_eq!(
        curve,
        ["2010-08-20", "2010-08-23"],
        "a point per market day"
    );
    assert!(pnl["realised"].as_str().unwrap().starts_with('-'), "{pnl}");
    assert_projects(&pnl, "execution", "pnl");
    assert_projects(&pnl["equity_curve"][0], "execution", "equity-point");
    assert_projects(&positions, "execution", "positions");
    assert_ne!(
        pnl["commissions"], "0.0000",
        "the commission schedule applies"
    );

    // A second order, then a restart on the same state directory.
    let (status, _) = trade(&base, TRADER, market_buy("buy-2", "MSFT", 50)).await;
    assert_eq!(status, 201);
    let before = view(&base, "/api/v1/execution/orders").await;
    drop(host);
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    let after = view(&base, "/api/v1/execution/orders").await;
    assert_eq!(before["orders"], after["orders"], "the ledger is durable");
    let (status, replay) = trade(&base, TRADER, market_buy("buy-1", "AAPL", 100)).await;
    assert_eq!(
        (status, replay["id"].as_str()),
        (200, Some(id.as_str())),
        "idempotent across restarts"
    );
    assert_eq!(replay["replayed"], true);
}

#[tokio::test]
async fn bad_orders_get_stable_4xx_codes_and_denials_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    let with = |patch: Value| {
        let mut order = market_buy("bad-1", "AAPL", 10);
        for (k, v) in patch.as_object().unwrap() {
            order[k] = v.clone();
        }
        order
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "unknown field",
            with(json!({"colour": "red"})),
            400,
            "unknown-field",
        ),
        (
            "negative quantity",
            with(json!({"quantity": -5})),
            400,
            "invalid-quantity",
        ),
        (
            "unknown side",
            with(json!({"side": "hold"})),
            400,
            "invalid-side",
        ),
        (
            "limit without a price",
            with(json!({"type": "limit"})),
            400,
            "invalid-limit_price",
        ),
        (
            "zero limit price",
            with(json!({"type": "limit", "limit_price": "0"})),
            400,
            "invalid-limit_price",
        ),
        (
            "empty client id",
            with(json!({"client_order_id": ""})),
            400,
            "invalid-client_order_id",
        ),
        (
            "zero quantity",
            with(json!({"quantity": 0})),
            400,
            "invalid-quantity",
        ),
        (
            "a market order with a limit price",
            with(json!({"limit_price": "150"})),
            400,
            "invalid-limit_price",
        ),
        (
            "a limit order with a stop price",
            with(json!({"type": "limit", "limit_price": "150", "stop_price": "140"})),
            400,
            "invalid-stop_price",
        ),
        (
            "a symbol not written canonically",
            with(json!({"symbol": "aapl"})),
            400,
            "invalid-symbol",
        ),
        (
            "malformed symbol",
            with(json!({"symbol": "not a ticker"})),
            400,
            "invalid-symbol",
        ),
        (
            "unknown symbol",
            with(json!({"symbol": "ZZZZ"})),
            404,
            "unknown-symbol",
        ),
        (
            "a stop-limit without its limit",
            with(json!({"type": "stop-limit", "stop_price": "150"})),
            400,
            "invalid-limit_price",
        ),
        (
            "a trailing stop with both distances",
            with(json!({"type": "trailing-stop", "trail_amount": "2", "trail_bps": 50})),
            400,
            "invalid-trail_amount",
        ),
        (
            "a trail on a market order",
            with(json!({"trail_bps": 50})),
            400,
            "invalid-trail_bps",
        ),
        (
            "an unknown time in force",
            with(json!({"time_in_force": "gtc"})),
            400,
            "invalid-time_in_force",
        ),
        (
            "a bracket with its stop above its target",
            with(json!({"stop_loss": "200", "take_profit": "150"})),
            400,
            "invalid-stop_loss",
        ),
        (
            "a closing auction on a currency pair",
            json!({"client_order_id": "fx-1", "symbol": "EURUSD=X", "side": "buy", "type": "market", "quantity": 1000, "time_in_force": "at-close"}),
            400,
            "unsupported-order-type",
        ),
        (
            "sell with nothing held",
            with(json!({"side": "sell"})),
            422,
            "short-sale",
        ),
    ];
    for (name, order, status, code) in cases {
        let (got, body) = trade(&base, TRADER, order).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{name}: {body}"
        );
    }
    let (status, raw) = {
        let resp = client()
            .post(format!("{base}/api/v1/execution/trade"))
            .bearer_auth(TRADER)
            .body("{not json")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    };
    assert_eq!((status, raw["code"].as_str()), (400, Some("invalid-json")));

    // ¥/$ 1,000,000 order notional: a denial with the order, recorded once.
    let (status, denied) = trade(&base, TRADER, market_buy("huge", "AAPL", 100_000)).await;
    assert_eq!(
        (status, denied["code"].as_str()),
        (422, Some("order-notional")),
        "{denied}"
    );
    assert_eq!(denied["order"]["status"], "rejected");
    assert_projects(&denied, "execution", "denied");
    assert_projects(&denied["denial"], "execution", "denial");
    let (status, again) = trade(&base, TRADER, market_buy("huge", "AAPL", 100_000)).await;
    assert_eq!(status, 422);
    assert_eq!(
        again["order"]["id"], denied["order"]["id"],
        "the first result, again"
    );
    let (status, conflict) = trade(&base, TRADER, market_buy("huge", "AAPL", 10)).await;
    assert_eq!(
        (status, conflict["code"].as_str()),
        (409, Some("idempotency-conflict"))
    );
    let rejected = view(&base, "/api/v1/execution/orders?status=rejected").await;
    let recorded: Vec<&str> = rejected["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["denial"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, ["order-notional", "short-sale"], "newest first");

    expect_error(
        &base,
        reqwest::Method::GET,
        "/api/v1/execution/orders/ord-9",
        Some(VIEWER),
        404,
        "order-not-found",
    )
    .await;
    // Filters that match nothing because they are misspelt are refused, not empty.
    for (path, code) in [
        ("/api/v1/execution/orders?status=fileld", "invalid-status"),
        ("/api/v1/execution/orders?symbol=aapl", "invalid-symbol"),
        ("/api/v1/execution/orders?limit=0", "invalid-limit"),
    ] {
        expect_error(&base, reqwest::Method::GET, path, Some(VIEWER), 400, code).await;
    }
    let (status, long) = call(
        &base,
        reqwest::Method::POST,
        "/api/v1/execution/trading-state",
        Some(ADMIN),
        Some(json!({"state": "HALTED", "reason": "x".repeat(501)})),
    )
    .await;
    assert_eq!(
        (status, long["code"].as_str()),
        (400, Some("invalid-reason")),
        "{long}"
    );
    let metrics = get(&host, "/api/v1/execution/metrics").await.1;
    promtool_check(&metrics);
    assert_eq!(
        metric_value(&metrics, "execution_denials{code=\"order-notional\"}"),
        1.0
    );
}

#[tokio::test]
async fn the_kill_switch_halts_reduces_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    // A wide stop and overnight holding: the position must outlive
    // Monday's 2% fall and its close for the sells below.
    settings
        .variables
        .push(("execution_stop_loss_bps".into(), "5000".into()));
    settings
        .variables
        .push(("execution_flat_by_close".into(), "false".into()));
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);
    let set = |state: &'static str| {
        let base = base.clone();
        async move {
            call(
                &base,
                reqwest::Method::POST,
                "/api/v1/execution/trading-state",
                Some(ADMIN),
                Some(json!({ "state": state, "reason": "test" })),
            )
            .await
        }
    };
    let (status, _) = trade(&base, TRADER, market_buy("k-1", "AAPL", 10)).await;
    assert_eq!(status, 201);
    advance_clock(&base).await;

    let (status, halted) = set("HALTED").await;
    assert_eq!(
        (status, halted["changed"].as_bool()),
        (200, Some(true)),
        "{halted}"
    );
    assert_projects(&halted, "execution", "state-answer");
    assert_projects(&halted["state_changes"][0], "execution", "state-change");
    let positions = view(&base, "/api/v1/execution/positions").await;
    assert_projects(&positions["positions"][0], "execution", "position-view");
    assert_projects(&positions["positions"][0]["exits"], "execution", "exits");
    let (status, body) = trade(&base, TRADER, market_buy("k-2", "AAPL", 10)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("halted")));
    let sell = json!({ "client_order_id": "k-3", "symbol": "AAPL", "side": "sell", "type": "market", "quantity": 10 });
    let (status, body) = trade(&base, TRADER, sell.clone()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("halted")),
        "halted: not even a sell"
    );

    set("REDUCING").await;
    let (status, body) = trade(&base, TRADER, market_buy("k-4", "AAPL", 10)).await;
    assert_eq!((status, body["code"].as_str()), (422, Some("reduce-only")));
    let sell = json!({ "client_order_id": "k-5", "symbol": "AAPL", "side": "sell", "type": "market", "quantity": 10 });
    let (status, body) = trade(&base, TRADER, sell).await;
    assert_eq!(
        status, 201,
        "reducing: a sell that shrinks the position: {body}"
    );

    set("ACTIVE").await;
    let (status, _) = trade(&base, TRADER, market_buy("k-6", "AAPL", 10)).await;
    assert_eq!(status, 201);
    let status = view(&base, "/api/v1/execution/status").await;
    let changes: Vec<&str> = status["state_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["to"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["HALTED", "REDUCING", "ACTIVE"]);
    assert_eq!(status["state_changes"][0]["by"], "admin");
    assert_projects(&status, "execution", "status");
    assert_projects(&status["limits"], "execution", "risk-limits");
    assert_projects(&status["fill_model"], "execution", "fill-model");
    assert!(
        status["state_changes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("key:")
    );
    let (status, body) = set("PAUSED").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-state"))
    );

    // Every change reached notification-service (its log channel, by default).
    let log = view(&base, "/api/v1/notifications?severity=critical").await;
    let mut titles: Vec<&str> = log["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["notification"]["title"].as_str().unwrap())
        .collect();
    titles.reverse();
    assert_eq!(titles, ["Trading HALTED", "Trading REDUCING"]);
    let fills = view(&base, "/api/v1/notifications?severity=info").await;
    assert!(
        fills["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["notification"]["type"] == "order-filled"),
        "{fills}"
    );
    let status = view(&base, "/api/v1/execution/status").await;
    assert_eq!(
        status["pending_notices"], 0,
        "the outbox is empty once delivered"
    );
}

#[tokio::test]
async fn one_client_order_id_sent_100_times_at_once_is_one_order() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    let sends: Vec<_> = (0..100)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move { trade(&base, TRADER, market_buy("once", "AAPL", 10)).await })
        })
        .collect();
    let mut created = 0;
    let mut ids = HashSet::new();
    for send in sends {
        let (status, body) = send.await.unwrap();
        assert!(status == 201 || status == 200, "{status}: {body}");
        created += usize::from(status == 201);
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(created, 1, "one creation, 99 replays");
    assert_eq!(ids.len(), 1);
    let orders = view(&base, "/api/v1/execution/orders").await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 1);
}

/// The client order ids of a `GET /orders` answer.
fn client_order_ids(orders: &Value) -> HashSet<String> {
    orders["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["client_order_id"].as_str().unwrap().to_string())
        .collect()
}

fn process_args(extra: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let fixed = [
        ("admin_token", ADMIN_TOKEN),
        ("replay_date", TEST_REPLAY_DATE),
    ];
    for (name, value) in fixed.iter().chain(extra) {
        args.push("--variable".into());
        args.push(format!("{name}={value}"));
    }
    args
}

#[tokio::test]
async fn two_host_processes_sharing_redis_never_breach_a_limit_together() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = redis_runtime_config(dir.path(), &redis);
    let mut args = process_args(&[
        ("execution_max_orders_per_minute", "1000"),
        ("execution_fx_rates", "USDJPY=100"),
    ]);
    args.push("--runtime-config-file".into());
    args.push(config.display().to_string());
    let ready = "/api/v1/execution/health";
    let a = HostProcess::start(&dir.path().join("a"), &args, ready).await;
    let b = HostProcess::start(&dir.path().join("b"), &args, ready).await;

    // Size orders so that exactly 8 fit under the ¥1,000,000 position
    // limit, dollar shares at ¥100.
    let close = price(&bar(&a.base, "AAPL", "2010-08-20").await["close"]);
    let quantity = (1_000_000 * Price::SCALE / (8 * close.ticks() * 100)) as u64;
    let sends: Vec<_> = (0..40)
        .map(|i| {
            let base = if i % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            tokio::spawn(async move {
                trade(
                    &base,
                    TRADER,
                    market_buy(&format!("r-{i}"), "AAPL", quantity),
                )
                .await
            })
        })
        .collect();
    let mut accepted = 0;
    for send in sends {
        let (status, body) = send.await.unwrap();
        match status {
            201 => accepted += 1,
            422 => assert_eq!(body["code"], "position-value", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(accepted, 8, "exactly the orders that fit");
    let from_a = view(&a.base, "/api/v1/execution/orders").await;
    let from_b = view(&b.base, "/api/v1/execution/orders").await;
    assert_eq!(from_a, from_b, "one ledger");
    assert_eq!(
        from_a["orders"].as_array().unwrap().len(),
        40,
        "every order recorded once"
    );
}

/// Redis killed for 5 s under a stream of orders: while it is down every
/// order gets a prompt 503 `store-unavailable` (never a hang), readiness
/// says so, and once Redis is back the host serves again by itself, with
/// every acknowledged order in the ledger.
#[tokio::test]
async fn a_redis_restart_under_load_fails_fast_recovers_and_loses_nothing() {
    use std::time::{Duration, Instant};
    let mut redis = RedisServer::start_durable();
    let dir = tempfile::tempdir().unwrap();
    let config = redis_runtime_config(dir.path(), &redis);
    let mut args = process_args(&[("execution_max_orders_per_minute", "100000")]);
    args.push("--runtime-config-file".into());
    args.push(config.display().to_string());
    let host =
        HostProcess::start(&dir.path().join("state"), &args, "/api/v1/execution/health").await;

    let base = host.base.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = tokio::spawn({
        let stop = stop.clone();
        async move {
            // (client order id, status, code, seconds it took)
            let mut answers: Vec<(String, u16, String, f64)> = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let id = format!("r-{i}");
                i += 1;
                let started = Instant::now();
                let resp = client()
                    .post(format!("{base}/api/v1/execution/trade"))
                    .bearer_auth(TRADER)
                    .json(&market_buy(&id, "AAPL", 1))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                let body: Value = resp.json().await.unwrap();
                let code = body["code"].as_str().unwrap_or_default().to_string();
                if status == 503 {
                    assert!(retry_after, "a 503 says when to retry");
                }
                answers.push((id, status, code, started.elapsed().as_secs_f64()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        }
    });
    let ready = |admin: String| async move {
        client()
            .get(format!("{admin}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ready(host.admin.clone()).await, 200);
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ready(host.admin.clone()).await,
        503,
        "readiness reports the store"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redis = redis.restart();
    let back = Instant::now();
    // Serving again by itself, within seconds.
    while ready(host.admin.clone()).await != 200 {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "not ready 10 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_after = back.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = stream.await.unwrap();

    let slowest = answers.iter().map(|a| a.3).fold(0.0, f64::max);
    eprintln!(
        "redis outage: {} orders, {} refused, slowest answer {slowest:.2} s, ready again {:.2} s after the restart",
        answers.len(),
        answers.iter().filter(|a| a.1 != 201).count(),
        ready_after.as_secs_f64()
    );
    assert!(slowest < 8.0, "an order waited {slowest:.1} s");
    let refused: Vec<_> = answers.iter().filter(|a| a.1 != 201).collect();
    assert!(!refused.is_empty(), "the outage was seen");
    for (id, status, code, _) in &refused {
        assert_eq!((*status, code.as_str()), (503, "store-unavailable"), "{id}");
    }
    let last = answers.last().unwrap();
    assert_eq!(last.1, 201, "orders are accepted again after the restart");

    let orders = view(&host.base, "/api/v1/execution/orders?limit=1000").await;
    let stored = client_order_ids(&orders);
    for (id, status, _, _) in &answers {
        if *status == 201 {
            assert!(stored.contains(id), "{id} was acknowledged and is gone");
        }
    }
    drop(redis);
}

#[tokio::test]
async fn no_acknowledged_order_is_lost_to_kill_minus_9() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let args = process_args(&[("execution_max_orders_per_minute", "100000")]);
    let ready = "/api/v1/execution/health";
    let mut host = HostProcess::start(&state, &args, ready).await;

    // A stream of orders; the host is killed while it flows.
    let base = host.base.clone();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let stream = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0..10_000 {
            let id = format!("s-{i}");
            let resp = client()
                .post(format!("{base}/api/v1/execution/trade"))
                .bearer_auth(TRADER)
                .json(&market_buy(&id, "AAPL", 1))
                .send()
                .await;
            match resp {
                Ok(resp) if resp.status() == 201 => {
                    acknowledged.push(id);
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(resp) => panic!("{}: {:?}", resp.status(), resp.text().await),
                Err(_) => break,
            }
        }
        acknowledged
    });
    // Killed mid-stream, once 25 orders were acknowledged.
    while count.load(std::sync::atomic::Ordering::SeqCst) < 25 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    host.kill();
    let acknowledged = stream.await.unwrap();
    assert!(acknowledged.len() >= 25, "{}", acknowledged.len());

    let host = HostProcess::start(&state, &args, ready).await;
    let orders = view(&host.base, "/api/v1/execution/orders").await;
    let stored = client_order_ids(&orders);
    for id in &acknowledged {
        assert!(stored.contains(id), "{id} was acknowledged and is gone");
    }
    assert!(
        stored.len() <= acknowledged.len() + 1,
        "at most the one in flight beside"
    );
}

#[tokio::test]
async fn replayed_days_of_trading_cycles_trade_on_paper_and_alert_slack() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Recorder::start().await;
    let mut settings = project(dir.path());
    for (name, value) in [
        ("notification_channels", "slack,log".to_string()),
        ("slack_webhook_origin", format!("http://{}", slack.addr)),
        (
            "slack_webhook_url",
            format!("http://{}/services/T/B/X", slack.addr),
        ),
    ] {
        settings.variables.push((name.into(), value));
    }
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    // Inside the bundled S&P 500 window (2009-08-21..2010-08-20), where the
    // whole universe trades.
    let resp = client()
        .put(format!("{base}/api/v1/data/clock"))
        .header("x-admin-token", ADMIN_TOKEN)
        .json(&json!({ "mode": "replay", "as_of": "2010-06-01" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let mut placed = 0;
    let mut days = Vec::new();
    for day in 0..8 {
        let resp = client()
            .post(format!("{base}/api/v1/execution/cycle"))
            .bearer_auth(TRADER)
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&json!({ "universe": 8 }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "day {day}");
        let cycle: Value = resp.json().await.unwrap();
        assert_eq!(cycle["trace_id"], trace_id, "one trace across the cycle");
        assert_projects(&cycle, "execution", "cycle-answer");
        for step in cycle["steps"].as_array().unwrap() {
            assert_projects(step, "execution", "cycle-step");
        }
        assert_projects(&cycle["steps"][1]["signals"][0], "execution", "signal");
        for order in cycle["steps"][2]["orders"].as_array().unwrap() {
            assert_projects(order, "execution", "cycle-order");
        }
        let steps: Vec<&str> = cycle["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps, ["recommend", "predict", "orders", "notify"]);
        let signals = cycle["steps"][1]["signals"].as_array().unwrap();
        assert_eq!(
            signals.len(),
            8,
            "a forecast per recommended symbol: {cycle}"
        );
        for order in cycle["steps"][2]["orders"].as_array().unwrap() {
            match order["outcome"].as_str().unwrap() {
                "placed" => placed += 1,
                "denied" => assert!(order["code"].is_string(), "{order}"),
                other => panic!("{other} on the first run of a day: {order}"),
            }
        }
        days.push(cycle["as_of"].as_str().unwrap().to_string());
        if day == 0 {
            // The same day again places nothing new.
            let again = call(
                &base,
                reqwest::Method::POST,
                "/api/v1/execution/cycle",
                Some(TRADER),
                Some(json!({ "universe": 8 })),
            )
            .await
            .1;
            for order in again["steps"][2]["orders"].as_array().unwrap() {
                assert_ne!(order["outcome"], "placed", "{order}");
            }
        }
        advance_clock(&base).await;
    }
    assert!(placed > 0, "eight days of signals placed no order");

    // Up to the day the clock was last moved to (reads do not sync).
    let (status, _) = sync(&base).await;
    assert_eq!(status, 200);
    let pnl = view(&base, "/api/v1/execution/pnl").await;
    let curve: Vec<&str> = pnl["equity_curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["date"].as_str().unwrap())
        .collect();
    // One point per cycle day, and one for the day the clock was last moved to.
    assert_eq!(curve[..days.len()], days, "a point per market day");
    assert_eq!(curve.len(), days.len() + 1);
    let orders = view(&base, "/api/v1/execution/orders?status=filled").await;
    assert!(!orders["orders"].as_array().unwrap().is_empty(), "{pnl}");

    // Fills and denials reached Slack as Block Kit messages.
    let seen = slack.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for request in &seen {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert!(body["attachments"][0]["blocks"].is_array(), "{body}");
    }
    let status = view(&base, "/api/v1/execution/status").await;
    assert_eq!(status["pending_notices"], 0);
}

#[tokio::test]
async fn a_bad_limit_keeps_the_service_unready_and_refuses_every_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings
        .variables
        .push(("execution_max_daily_loss".into(), "-5".into()));
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);
    let (status, health) = get_json(&host, "/api/v1/execution/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["dependencies"][0]["service"], "configuration");
    assert_eq!(
        health["dependencies"][0]["status"],
        "max_daily_loss must be positive"
    );
    let (status, body) = trade(&base, TRADER, market_buy("x-1", "AAPL", 1)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("configuration"))
    );
    assert!(body["message"].as_str().unwrap().contains("max_daily_loss"));
}

#[tokio::test]
async fn an_unusable_jwks_shows_in_health_and_refuses_credentials_with_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    for (name, value) in [
        ("jwt_jwks", r#"{"keys":[{"kty":"EC","crv":"P-256"}]}"#),
        ("jwt_issuer", IDP_ISSUER),
    ] {
        settings.variables.push((name.into(), value.into()));
    }
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);
    let (_, health) = get_json(&host, "/api/v1/execution/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(
        health["dependencies"][0]["status"],
        "authentication is misconfigured: `jwt_jwks` has no RS256 signing key"
    );
    // Nobody gets in on a broken configuration, and it says why.
    let (status, body) = trade(&base, TRADER, market_buy("x-1", "AAPL", 1)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("auth-misconfigured"))
    );
}

#[tokio::test]
async fn orders_are_cancelled_by_traders_and_jwts_carry_roles() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings
        .variables
        .push(("jwt_secret".into(), "jwt-test-secret".into()));
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    use daytrade_contract::auth::{Role, sign_jwt};
    let trader_jwt = sign_jwt(b"jwt-test-secret", "alice", Role::Trader, now + 300);
    let (status, placed) = trade(&base, &trader_jwt, market_buy("j-1", "AAPL", 10)).await;
    assert_eq!(status, 201, "a trader's JWT places orders: {placed}");
    let expired = sign_jwt(b"jwt-test-secret", "alice", Role::Trader, now - 1);
    let (status, body) = trade(&base, &expired, market_buy("j-2", "AAPL", 10)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid-credentials"))
    );
    let forged = sign_jwt(b"another-secret", "mallory", Role::Admin, now + 300);
    let (status, _) = trade(&base, &forged, market_buy("j-3", "AAPL", 10)).await;
    assert_eq!(status, 401);

    let id = placed["id"].as_str().unwrap();
    let path = format!("/api/v1/execution/orders/{id}");
    let (status, cancelled) = call(
        &base,
        reqwest::Method::DELETE,
        &path,
        Some(&trader_jwt),
        None,
    )
    .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled}"
    );
    let delete = reqwest::Method::DELETE;
    expect_error(
        &base,
        delete.clone(),
        &path,
        Some(TRADER),
        409,
        "not-cancellable",
    )
    .await;
    let missing = "/api/v1/execution/orders/ord-404";
    expect_error(&base, delete, missing, Some(TRADER), 404, "order-not-found").await;
    // A cancelled order holds no reservation and never fills.
    advance_clock(&base).await;
    let (_, order) = call(&base, reqwest::Method::GET, &path, Some(VIEWER), None).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["fills"], json!([]));
}

#[tokio::test]
async fn finished_orders_move_to_the_archive_and_stay_readable_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    for (name, value) in [
        ("execution_keep_finished_orders", "5"),
        ("execution_max_orders_per_minute", "1000"),
    ] {
        settings.variables.push((name.into(), value.into()));
    }
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);
    let sell = |i: usize| json!({ "client_order_id": format!("a-{i}"), "symbol": "AAPL", "side": "sell", "type": "market", "quantity": 1 });
    for i in 0..40 {
        let (status, _) = trade(&base, TRADER, sell(i)).await;
        assert_eq!(status, 422, "nothing held: short-sale");
    }
    let status = view(&base, "/api/v1/execution/status").await;
    assert!(
        status["orders"].as_u64().unwrap() < 40,
        "the book holds few finished orders: {}",
        status["orders"]
    );
    let all = view(&base, "/api/v1/execution/orders?limit=1000").await;
    let ids: Vec<&str> = all["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 40, "book and archive together");
    assert_eq!(
        (ids[0], ids[39]),
        ("ord-00000040", "ord-00000001"),
        "newest first"
    );
    let first = view(&base, "/api/v1/execution/orders/ord-00000001").await;
    assert_eq!(first["client_order_id"], "a-0");
    // The archived order's id is still the same order.
    let (status, replay) = trade(&base, TRADER, sell(0)).await;
    assert_eq!(
        (status, replay["order"]["id"].as_str()),
        (422, Some("ord-00000001"))
    );
    let mut changed = sell(0);
    changed["quantity"] = json!(2);
    let (status, _) = trade(&base, TRADER, changed).await;
    assert_eq!(status, 409);
    let limited = view(&base, "/api/v1/execution/orders?limit=3").await;
    assert_eq!(limited["orders"].as_array().unwrap().len(), 3);
    assert_projects(&limited, "execution", "orders");
    // Pages by cursor, newest first, through book and archive alike.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = view(&base, &format!("/api/v1/execution/orders?limit=7{cursor}")).await;
        paged.extend(
            page["orders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => cursor = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, ids, "the pages are the whole history, once each");
    let dated = view(&base, "/api/v1/execution/orders?limit=1000&date=2010-08-20").await;
    assert_eq!(dated["orders"].as_array().unwrap().len(), 40);
    let other_day = view(&base, "/api/v1/execution/orders?date=2010-08-19").await;
    assert_eq!(other_day["orders"], json!([]));
    // An archived order's whole history: placed (rejected), nothing after.
    assert_eq!(first["history"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["history"][0]["type"], "order-placed");
    assert_eq!(first["history"][0]["record"]["status"], "rejected");
    for (query, code) in [
        ("limit=0", "invalid-limit"),
        ("after=42", "invalid-after"),
        ("date=yesterday", "invalid-date"),
    ] {
        let (status, body) = call(
            &base,
            reqwest::Method::GET,
            &format!("/api/v1/execution/orders?{query}"),
            Some(VIEWER),
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some(code)),
            "{query}"
        );
    }
}

/// Every row of the default key-value store, as stored.
fn store_rows(state: &std::path::Path) -> Vec<(String, String, Vec<u8>)> {
    let db = rusqlite::Connection::open_with_flags(
        state.join("sqlite_key_value.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut rows = db
        .prepare("SELECT store, key, value FROM spin_key_value ORDER BY store, key")
        .unwrap();
    rows.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Reads are reads: with work pending (the clock moved past a working
/// order's session, filled and finished orders in the book), every `GET`
/// shows the book as last synced, says when that was, and leaves the store
/// byte for byte as it was; only a write (`POST /sync`) moves the book on.
#[tokio::test]
async fn reads_never_write_and_say_when_the_book_was_synced() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    for n in 0..5 {
        let (status, placed) =
            trade(&base, TRADER, market_buy(&format!("r-{n}"), "AAPL", 50)).await;
        assert_eq!(status, 201, "{placed}");
    }
    let (status, _) = trade(&base, TRADER, market_buy("r-msft", "MSFT", 10)).await;
    assert_eq!(status, 201);
    let before_sync = view(&base, "/api/v1/execution/status").await;
    assert_eq!(before_sync["synced"]["as_of"], "2010-08-20");
    assert!(before_sync["synced"]["at"].is_string(), "{before_sync}");
    advance_clock(&base).await;

    let rows = store_rows(dir.path());
    let reads = [
        "/api/v1/execution/orders",
        "/api/v1/execution/orders?status=open",
        "/api/v1/execution/orders/ord-00000001",
        "/api/v1/execution/positions",
        "/api/v1/execution/pnl",
        "/api/v1/execution/status",
        "/api/v1/execution/metrics",
    ];
    for _ in 0..3 {
        for path in reads {
            let resp = client()
                .get(format!("{base}{path}"))
                .bearer_auth(VIEWER)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}");
        }
    }
    assert!(
        store_rows(dir.path()) == rows,
        "a run of reads changed the store"
    );
    let status = view(&base, "/api/v1/execution/status").await;
    assert_eq!(status["synced"], before_sync["synced"], "{status}");
    assert_eq!(status["working_orders"], 6, "nothing filled by reading");
    let open = view(&base, "/api/v1/execution/orders?status=open").await;
    assert_eq!(open["orders"].as_array().unwrap().len(), 6);
    assert_projects(&open, "execution", "orders");

    let (status, synced) = sync(&base).await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["synced"]["as_of"], "2010-08-23");
    assert_eq!(synced["working_orders"], 0, "Monday's open filled them");
    assert!(store_rows(dir.path()) != rows, "a sync is a write");
    let positions = view(&base, "/api/v1/execution/positions").await;
    assert_eq!(positions["synced"], synced["synced"]);
    assert_projects(&positions, "execution", "positions");
    host.shutdown().await;

    // The component's book is the fold of the events it stored, each under
    // its own key: rebuilt from them, it is the stored book.
    let rows = store_rows(dir.path());
    let value = |key: &str| rows.iter().find(|(_, k, _)| k == key).map(|(_, _, v)| v);
    let mut stored: trading::Book =
        serde_json::from_slice(value("execution/book").expect("the book")).unwrap();
    // Blocks of events, a line each: `<sequence> <json>`.
    let mut events: Vec<(u64, trading::Event)> = rows
        .iter()
        .filter(|(_, key, _)| key.starts_with("execution/book/events/"))
        .flat_map(|(_, _, bytes)| {
            String::from_utf8(bytes.clone())
                .unwrap()
                .lines()
                .map(|line| {
                    let (sequence, json) = line.split_once(' ').unwrap();
                    (
                        sequence.parse().unwrap(),
                        serde_json::from_str(json).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for (sequence, event) in &stored.journal {
        if !events.iter().any(|(n, _)| n == sequence) {
            events.push((*sequence, event.clone()));
        }
    }
    events.sort_by_key(|(n, _)| *n);
    let numbers: Vec<u64> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=stored.events).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, trading::Event::OrderFilled { .. })),
        "Monday's fills are events"
    );
    stored.journal.clear();
    assert!(
        trading::Book::replay(events.iter().map(|(_, e)| e)) == stored,
        "the book rebuilt from its events differs from the stored book"
    );
}

/// The notification ids in what a receiver answered `status` to.
fn notification_ids(seen: &[Seen], status: u16) -> Vec<String> {
    seen.iter()
        .filter(|s| s.status == status)
        .filter_map(|s| {
            let body = String::from_utf8_lossy(&s.body);
            let at = body.find("ntf-")?;
            Some(body[at..at + 12].to_string())
        })
        .collect()
}

/// Notices at least once, off the order path, through restarts: Slack
/// answers 503 to its first calls; notification-service is stopped while a
/// notice is due (execution-service keeps it in its outbox), started again,
/// execution-service is restarted, notification-service again: every notice
/// reaches Slack, each exactly once.
#[tokio::test]
async fn notices_reach_slack_exactly_once_through_failures_and_restarts() {
    let failing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slack = Recorder::serve({
        let failing = failing.clone();
        Arc::new(move |_| {
            if failing.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 4 {
                (503, "unavailable".into())
            } else {
                (200, "ok".into())
            }
        })
    })
    .await;
    let (trading_dir, notify_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let notify_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut notify = settings(&workspace_root().join("spin.toml"), notify_dir.path());
    notify.components = vec!["notification-service".into()];
    for (name, value) in [
        ("notification_channels", "slack".to_string()),
        ("slack_webhook_origin", format!("http://{}", slack.addr)),
        (
            "slack_webhook_url",
            format!("http://{}/services/T/B/X", slack.addr),
        ),
        ("notification_retry_base_ms", "100".to_string()),
        ("notification_retry_budget_ms", "60000".to_string()),
    ] {
        notify.variables.push((name.into(), value));
    }
    let mut trading = project(trading_dir.path());
    trading.components = [
        "data-service",
        "symbol-service",
        "ml-service",
        "execution-service",
    ]
    .map(String::from)
    .to_vec();
    trading.variables.push((
        "notification_service_url".into(),
        format!("http://{notify_addr}"),
    ));
    let notifier = start_on(&notify, notify_addr).await;
    let host = start(&trading).await;
    let base = format!("http://{}", host.addr);
    let pending = |base: String| async move {
        view(&base, "/api/v1/execution/status").await["pending_notices"].clone()
    };

    // A denial's notice: accepted by notification-service; Slack says 503.
    let (status, _) = trade(
        &base,
        TRADER,
        json!({"client_order_id": "n-1", "symbol": "AAPL",
        "side": "sell", "type": "market", "quantity": 10}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(pending(base.clone()).await, 0, "handed over at once");

    // notification-service down: the next notice waits in the outbox.
    notifier.shutdown().await;
    let (status, _) = trade(
        &base,
        TRADER,
        json!({"client_order_id": "n-2", "symbol": "MSFT",
        "side": "sell", "type": "market", "quantity": 10}),
    )
    .await;
    assert_eq!(status, 422, "the order's answer does not wait for alerts");
    assert_eq!(pending(base.clone()).await, 1);

    // Back: the next write hands it over.
    let notifier = start_on(&notify, notify_addr).await;
    let (status, _) = sync(&base).await;
    assert_eq!(status, 200);
    assert_eq!(pending(base.clone()).await, 0);

    // execution-service restarted: two state changes, two more notices.
    host.shutdown().await;
    let host = start(&trading).await;
    let base = format!("http://{}", host.addr);
    for state in ["HALTED", "ACTIVE"] {
        let (status, body) = call(
            &base,
            reqwest::Method::POST,
            "/api/v1/execution/trading-state",
            Some("dev-admin-key"),
            Some(json!({"state": state, "reason": "drill"})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(pending(base.clone()).await, 0);

    // notification-service restarted with deliveries still due; passes until done.
    notifier.shutdown().await;
    let notifier = start_on(&notify, notify_addr).await;
    deliver_all(&format!("http://{notify_addr}")).await;

    let seen = slack.seen.lock().unwrap().clone();
    assert!(
        notification_ids(&seen, 503).len() >= 4,
        "Slack failed first"
    );
    let mut delivered = notification_ids(&seen, 200);
    delivered.sort();
    let log = view(
        &format!("http://{notify_addr}"),
        "/api/v1/notifications?limit=50",
    )
    .await;
    let mut logged: Vec<String> = log["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    logged.sort();
    assert_eq!(logged.len(), 4, "two denials, two state changes: {log}");
    assert_eq!(delivered, logged, "each notice reached Slack exactly once");
    for record in log["notifications"].as_array().unwrap() {
        assert_eq!(record["deliveries"][0]["status"], "delivered", "{record}");
    }
    host.shutdown().await;
    notifier.shutdown().await;
}

/// The same order, fill and book whether data-service is composed into
/// execution-service (`spin.toml`: the market view is typed calls) or in a
/// pod of its own (`spin.pods.toml`: the same calls as requests through the
/// `data-remote` adapter).
#[tokio::test]
async fn an_order_fills_the_same_composed_or_over_http() {
    let mut books = Vec::new();
    for manifest in ["spin.toml", "spin.pods.toml"] {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = project(dir.path());
        settings.manifest = workspace_root().join(manifest);
        let host = start(&settings).await;
        let base = format!("http://{}", host.addr);
        let (status, placed) = trade(&base, TRADER, market_buy("same-1", "AAPL", 100)).await;
        assert_eq!(status, 201, "{manifest}: {placed}");
        advance_clock(&base).await;
        let (status, synced) = sync(&base).await;
        assert_eq!(status, 200, "{manifest}: {synced}");
        let id = placed["id"].as_str().unwrap();
        let order = view(&base, &format!("/api/v1/execution/orders/{id}")).await;
        assert_eq!(order["status"], "filled", "{manifest}: {order}");
        let positions = view(&base, "/api/v1/execution/positions").await;
        // The cycle: its screening (symbol-service with its composed
        // data-service, or data-remote) and its signals.
        let (status, cycle) = call(
            &base,
            reqwest::Method::POST,
            "/api/v1/execution/cycle",
            Some(TRADER),
            Some(json!({ "universe": 5, "max_orders": 0 })),
        )
        .await;
        assert_eq!(status, 200, "{manifest}: {cycle}");
        let screened = cycle["steps"][0]["symbols"].clone();
        assert_eq!(screened.as_array().map(Vec::len), Some(5), "{cycle}");
        // Predicted on features ml-service fetched the same two ways.
        let signals = cycle["steps"][1]["signals"].clone();
        assert_eq!(signals.as_array().map(Vec::len), Some(5), "{cycle}");
        let metrics = metrics(&host).await;
        let (linked, http) = (
            metric_value(
                &metrics,
                &format!(
                    "runtime_host_linked_calls_total{{component=\"execution-service\",dependency=\"{}\",\
                     function=\"daytrade:platform/data@0.1.0#batch-fetch\"}}",
                    if manifest == "spin.toml" {
                        "data-service"
                    } else {
                        "data_remote"
                    }
                ),
            ),
            metric_value(
                &metrics,
                "runtime_host_http_requests_total{component=\"data-service\",status=\"200\"}",
            ),
        );
        assert!(linked >= 2.0, "{manifest}: {linked} typed market views");
        // The one request of the test's own: moving the clock.
        if manifest == "spin.toml" {
            assert_eq!(http, 1.0, "composed: no other request reaches data-service");
        } else {
            assert!(http > linked, "over HTTP: each call a request ({http})");
        }
        books.push((
            order["fills"].clone(),
            positions["positions"].clone(),
            positions["cash"].clone(),
            screened,
            signals,
        ));
        host.shutdown().await;
    }
    assert_eq!(books[0], books[1]);
}
