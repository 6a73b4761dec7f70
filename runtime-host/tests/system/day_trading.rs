//! Day trading through the host: a month of EUR/USD hourly bars replayed
//! bar by bar with the cycle on every bar, and ten days of US equities
//! bought at the open and flat by the close; the ledger's end state is
//! checked, and the replay's speed printed.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::common::*;
use crate::execution_service::{
    ADMIN_TOKEN, TRADER, call, history_types, market_buy, price, project, sync, trade, view,
};

async fn set_clock(base: &str, body: Value) -> Value {
    put_clock(base, ADMIN_TOKEN, body).await
}

/// The order a `POST /trade` answer placed, as `GET /orders/{id}` shows it.
async fn order_of(base: &str, placed: &Value) -> Value {
    let id = placed["id"].as_str().expect("a placed order");
    view(base, &format!("/api/v1/execution/orders/{id}")).await
}

/// `POST /clock/advance?by=` (bar, session, day) as the admin.
pub(crate) async fn advance(base: &str, by: &str) -> Value {
    let resp = client()
        .post(format!("{base}/api/v1/data/clock/advance?by={by}"))
        .header("x-admin-token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an instant: {v}"))
}

/// Every order of the account (up to 1,000), oldest first.
async fn all_orders(base: &str) -> Vec<Value> {
    let mut orders = view(base, "/api/v1/execution/orders?limit=1000").await["orders"]
        .as_array()
        .unwrap()
        .clone();
    orders.reverse();
    orders
}

/// No fill on a bar that opened before its order's decision (an at-close
/// fill: at a close after it).
fn assert_no_fill_before_its_decision(orders: &[Value]) {
    for o in orders {
        let decided = instant(&o["works_from"]);
        for f in o["fills"].as_array().unwrap() {
            let at = instant(&f["at"]);
            if o["time_in_force"] == "at-close" {
                assert!(at > decided, "{o}");
            } else {
                assert!(at >= decided, "{o}");
            }
        }
    }
}

#[tokio::test]
async fn a_month_of_eur_usd_hourly_bars_replayed_with_the_cycle_on_every_bar() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    // Monday 2017-03-06's FX day opened at 17:00 New York on Sunday (22:00 UTC).
    set_clock(
        &base,
        json!({"mode": "replay", "as_of": "2017-03-05T23:00:00Z", "market": "fx", "interval": "1h"}),
    )
    .await;
    // Features on the clock's hourly bars: at the last hour closed.
    let features = view(&base, "/api/v1/data/features/EURUSD=X?interval=1h").await;
    assert_eq!(
        (features["interval"].as_str(), features["at"].as_str()),
        (Some("1h"), Some("2017-03-05T23:00:00Z")),
        "{features}"
    );
    let end: DateTime<Utc> = "2017-04-05T21:00:00Z".parse().unwrap();
    let (mut bars, mut cycle_ms, mut advance_ms, mut trade_ms) = (0u32, 0.0, 0.0, 0.0);
    let mut predict_ms = 0.0;
    let (mut day_ends, mut mornings): (u32, usize) = (0, 0);
    let started = Instant::now();
    let mut clock = view(&base, "/api/v1/data/clock").await;
    while instant(&clock["as_of"]) < end {
        let local = clock["local"].as_str().unwrap().to_string();
        let step = Instant::now();
        let (status, cycle) = call(
            &base,
            reqwest::Method::POST,
            "/api/v1/execution/cycle",
            Some(TRADER),
            Some(json!({"symbols": ["EURUSD=X"]})),
        )
        .await;
        assert_eq!(status, 200, "{cycle}");
        cycle_ms += step.elapsed().as_secs_f64() * 1e3;
        predict_ms += cycle["steps"][1]["ms"].as_f64().unwrap_or_default();
        // A scripted entry each morning in New York (08:00): the cycle's
        // model rarely says buy on a currency pair, the script always does.
        if local.contains("T08:00:00") {
            let step = Instant::now();
            let id = format!("am-{}", &local[..10]);
            let order = json!({
                "client_order_id": id, "symbol": "EURUSD=X", "side": "buy",
                "type": "market", "quantity": 10_000,
            });
            let (status, placed) = trade(&base, TRADER, order).await;
            assert_eq!(status, 201, "{placed}");
            trade_ms += step.elapsed().as_secs_f64() * 1e3;
            mornings += 1;
        }
        // The FX day ends at 17:00 New York: flat by then.
        if local.contains("T17:00:00") {
            let positions = view(&base, "/api/v1/execution/positions").await;
            assert_eq!(positions["positions"], json!([]), "{local}: {positions}");
            day_ends += 1;
        }
        let step = Instant::now();
        clock = advance(&base, "bar").await;
        advance_ms += step.elapsed().as_secs_f64() * 1e3;
        bars += 1;
    }
    let (status, _) = sync(&base).await;
    assert_eq!(status, 200);
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "EUR/USD hourly replay: {bars} bars in {elapsed:.1} s = {:.1} bars/s; per bar: cycle {:.1} ms (predict {:.1} ms), advance {:.1} ms; a trade {:.1} ms",
        f64::from(bars) / elapsed,
        cycle_ms / f64::from(bars),
        predict_ms / f64::from(bars),
        advance_ms / f64::from(bars),
        trade_ms / mornings.max(1) as f64,
    );
    assert!(bars >= 500, "a month of hourly bars: {bars}");
    assert!(day_ends >= 20, "{day_ends} FX days ended");

    let orders = all_orders(&base).await;
    assert_no_fill_before_its_decision(&orders);
    let by_origin =
        |origin: &str| -> Vec<&Value> { orders.iter().filter(|o| o["origin"] == origin).collect() };
    let entries = by_origin("api");
    assert_eq!(entries.len(), mornings, "one scripted entry a day");
    assert!(
        entries.iter().all(|o| o["status"] == "filled"),
        "entries fill on the next bar"
    );
    // Each day's entry left by its close: a stop, a take-profit or the cutoff.
    let exits: Vec<&Value> = orders
        .iter()
        .filter(|o| o["side"] == "sell" && o["status"] == "filled")
        .collect();
    assert!(
        exits.len() >= entries.len(),
        "{} exits of {} entries",
        exits.len(),
        entries.len()
    );
    assert!(!by_origin("flat-by-close").is_empty());
    for exit in by_origin("flat-by-close") {
        let at = instant(&exit["fills"][0]["at"]);
        // 16:00 to 17:00 New York is the day's last bar: sold at its close.
        assert_eq!(at.format("%M:%S").to_string(), "00:00");
        assert_eq!(exit["time_in_force"], "at-close", "{exit}");
    }
    let pnl = view(&base, "/api/v1/execution/pnl").await;
    let positions = view(&base, "/api/v1/execution/positions").await;
    assert_eq!(positions["positions"], json!([]));
    assert_eq!(pnl["equity"], positions["cash"], "flat: equity is cash");
    assert_eq!(pnl["unrealised"], "0.0000");
    // A yen account: EUR/USD is bought and sold in dollars, the first
    // entry's dollars bought with yen at the configured rate, and what the
    // sales left stays in dollars, valued in yen.
    assert_eq!(
        (pnl["currency"].as_str(), positions["currency"].as_str()),
        (Some("JPY"), Some("JPY"))
    );
    let first = &entries[0]["fills"][0];
    assert_eq!(
        (first["currency"].as_str(), first["rate"].as_str()),
        (Some("USD"), Some("85.5000")),
        "{first}"
    );
    assert_eq!(first["conversion"]["currency"], "USD", "{first}");
    let dollars = positions["balances"]["by_currency"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["currency"] == "USD")
        .expect("dollars held");
    assert_eq!(dollars["rate"], "85.5000");
    let yen = positions["balances"]["by_currency"][0]["amount"]
        .as_str()
        .unwrap();
    let total = price(&positions["cash"]).ticks();
    let usd = price(&dollars["amount"]).ticks();
    assert_eq!(
        total,
        price(&json!(yen)).ticks() + ((i128::from(usd) * 855 + 5) / 10) as i64,
        "cash is the yen plus the dollars at 85.5"
    );
}

#[tokio::test]
async fn ten_days_of_us_equities_bought_at_the_open_and_flat_by_the_close() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    // After the close of Friday 2010-02-26.
    set_clock(
        &base,
        json!({"mode": "replay", "as_of": "2010-02-26", "market": "us"}),
    )
    .await;
    let mut days = Vec::new();
    for _ in 0..10 {
        let clock = view(&base, "/api/v1/data/clock").await;
        let id = format!("moo-{}", clock["date"].as_str().unwrap());
        let order = json!({
            "client_order_id": id, "symbol": "AAPL", "side": "buy", "type": "market",
            "quantity": 100, "time_in_force": "at-open",
        });
        let (status, placed) = trade(&base, TRADER, order).await;
        assert_eq!(status, 201, "{placed}");
        let clock = advance(&base, "day").await;
        days.push(clock["date"].as_str().unwrap().to_string());
        let (status, synced) = sync(&base).await;
        assert_eq!(status, 200);
        assert_eq!(
            synced["open_positions"], 0,
            "{}: flat after the close",
            clock["date"]
        );
    }
    let orders = all_orders(&base).await;
    assert_no_fill_before_its_decision(&orders);
    let mut trades: BTreeMap<String, Vec<(String, String, DateTime<Utc>)>> = BTreeMap::new();
    for o in orders.iter().filter(|o| o["status"] == "filled") {
        let fill = &o["fills"][0];
        trades
            .entry(fill["date"].as_str().unwrap().into())
            .or_default()
            .push((
                o["side"].as_str().unwrap().into(),
                o["origin"].as_str().unwrap().into(),
                instant(&fill["at"]),
            ));
    }
    assert_eq!(
        trades.keys().cloned().collect::<Vec<_>>(),
        days,
        "a round trip every day"
    );
    for (day, legs) in &trades {
        let date = day.parse().unwrap();
        let open = market_data::Market::Us.session_open(date);
        let close = market_data::Market::Us.close_of(date).unwrap();
        let sides: Vec<&str> = legs.iter().map(|(side, _, _)| side.as_str()).collect();
        assert_eq!(sides, ["buy", "sell"], "{day}: {legs:?}");
        assert_eq!(legs[0].2, open, "{day}: bought in the opening auction");
        // Sold by a stop during the day, or at the close by the cutoff.
        match legs[1].1.as_str() {
            "flat-by-close" => assert_eq!(legs[1].2, close, "{day}"),
            "stop-loss" | "take-profit" => assert!(legs[1].2 < close, "{day}"),
            other => panic!("{day}: sold by {other}"),
        }
    }
    let entry = orders.iter().find(|o| o["origin"] == "api").unwrap();
    assert!(price(&entry["fills"][0]["price"]) > market_data::Price::from_ticks(0));
    let pnl = view(&base, "/api/v1/execution/pnl").await;
    let positions = view(&base, "/api/v1/execution/positions").await;
    assert_eq!(pnl["equity"], positions["cash"]);
    let curve = pnl["equity_curve"].as_array().unwrap();
    assert!(curve.len() >= 10, "a point a day: {pnl}");
}

/// `make up` as a newcomer finds it: the default replay day's cycle places
/// orders, and one day later they have filled and been closed by the close.
#[tokio::test]
async fn the_default_replay_day_lets_the_first_cycle_fill() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = project(dir.path());
    settings.variables.retain(|(name, _)| name != "replay_date");
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);
    let (status, cycle) = call(
        &base,
        reqwest::Method::POST,
        "/api/v1/execution/cycle",
        Some(TRADER),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{cycle}");
    let placed = cycle["steps"][2]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["outcome"] == "placed")
        .count();
    assert!(placed > 0, "the first cycle places orders: {cycle}");
    advance(&base, "day").await;
    let (status, synced) = sync(&base).await;
    assert_eq!(status, 200);
    let orders = all_orders(&base).await;
    let filled_buys = orders
        .iter()
        .filter(|o| o["origin"] == "cycle" && o["status"] == "filled")
        .count();
    assert_eq!(
        filled_buys, placed,
        "every entry filled at the next open: {orders:?}"
    );
    assert_eq!(synced["open_positions"], 0, "and was closed by the close");
}

/// `PATCH /orders/{id}`: a working limit order's price and quantity change
/// in place; bad input is a 4xx with its code and changes nothing.
#[tokio::test]
async fn a_working_order_is_modified_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    let order = json!({
        "client_order_id": "mod-1", "symbol": "AAPL", "side": "buy", "type": "limit",
        "limit_price": "100", "quantity": 10,
    });
    let (status, placed) = trade(&base, TRADER, order).await;
    assert_eq!(status, 201, "{placed}");
    let path = format!(
        "/api/v1/execution/orders/{}",
        placed["id"].as_str().unwrap()
    );
    let patch = |body: Value| {
        let (base, path) = (base.clone(), path.clone());
        async move {
            call(
                &base,
                reqwest::Method::PATCH,
                &path,
                Some(TRADER),
                Some(body),
            )
            .await
        }
    };
    let (status, modified) = patch(json!({"limit_price": "110", "quantity": 20})).await;
    assert_eq!(status, 200, "{modified}");
    assert_eq!(
        (
            modified["limit_price"].as_str(),
            modified["quantity"].as_u64()
        ),
        (Some("110.0000"), Some(20))
    );
    daytrade_contract::wit_check::assert_projects(&modified, "execution", "order-record");
    let cases = [
        (json!({}), 400, "invalid-json"),
        (json!({"colour": "red"}), 400, "unknown-field"),
        (json!({"stop_price": "90"}), 400, "invalid-stop_price"),
        (json!({"quantity": 0}), 400, "invalid-quantity"),
        (json!({"quantity": 1_000_000}), 422, "order-notional"),
        (json!({"take_profit": "150"}), 400, "invalid-stop_loss"),
    ];
    for (body, status, code) in cases {
        let (got, answer) = patch(body.clone()).await;
        assert_eq!(
            (got, answer["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let order = view(&base, &path).await;
    assert_eq!(
        (order["limit_price"].as_str(), order["quantity"].as_u64()),
        (Some("110.0000"), Some(20))
    );
    assert_eq!(history_types(&order), ["order-placed", "order-modified"]);
    let (status, _) = call(&base, reqwest::Method::DELETE, &path, Some(TRADER), None).await;
    assert_eq!(status, 200);
    let (status, answer) = patch(json!({"quantity": 30})).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("not-modifiable"))
    );
    // A bracket's legs move; its request stays what was asked.
    let bracket = json!({
        "client_order_id": "mod-2", "symbol": "AAPL", "side": "buy", "type": "limit",
        "limit_price": "30", "quantity": 10, "stop_loss": "28", "take_profit": "35",
    });
    let (status, placed) = trade(&base, TRADER, bracket).await;
    assert_eq!(status, 201, "{placed}");
    let (status, moved) = call(
        &base,
        reqwest::Method::PATCH,
        &format!(
            "/api/v1/execution/orders/{}",
            placed["id"].as_str().unwrap()
        ),
        Some(TRADER),
        Some(json!({"take_profit": "36.5"})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        moved["legs"],
        json!({"stop_loss": "28.0000", "take_profit": "36.5000"})
    );
    assert_eq!(moved["request"]["take_profit"], "35.0000");
    daytrade_contract::wit_check::assert_projects(&moved, "execution", "order-record");
}

/// The workspace's `spin.toml` in `dir` with its paths made absolute and
/// data-service's import folder at `imports`.
fn manifest_importing(dir: &std::path::Path, imports: &std::path::Path) -> std::path::PathBuf {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("spin.toml"))
        .unwrap()
        .replace(
            "source = \"target/",
            &format!("source = \"{}/target/", root.display()),
        )
        .replace(
            "path = \"target/",
            &format!("path = \"{}/target/", root.display()),
        )
        .replace(
            "source = \"config\"",
            &format!("source = \"{}/config\"", root.display()),
        )
        .replace(
            "source = \"import\"",
            &format!("source = \"{}\"", imports.display()),
        );
    let manifest = dir.join("spin.toml");
    std::fs::write(&manifest, text).unwrap();
    manifest
}

/// `POST /api/v1/data/import` with a CSV body.
async fn import(base: &str, query: &str, csv: &str, admin: bool) -> (u16, Value) {
    let mut req = client()
        .post(format!("{base}/api/v1/data/import?{query}"))
        .header("content-type", "text/csv")
        .body(csv.to_string());
    if admin {
        req = req.header("x-admin-token", ADMIN_TOKEN);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// A broker's export of TSE minute bars, read from the import folder at
/// start, traded on: a buy at 09:05 JST fills on the 09:05 bar. A file with
/// a bad row is refused with its line; `POST /import` takes CSV too, checks
/// every row and takes nothing from a file with an error.
#[tokio::test]
async fn a_brokers_tse_minute_bars_are_imported_and_traded() {
    let dir = tempfile::tempdir().unwrap();
    let imports = dir.path().join("import");
    std::fs::create_dir(&imports).unwrap();
    let mut csv = String::from("time,open,high,low,close,volume\n");
    for minute in 0..30 {
        let price = 2500 + minute;
        csv.push_str(&format!(
            "2025-11-28 09:{minute:02},{price},{},{},{}.5,{}\n",
            price + 2,
            price - 1,
            price,
            10_000 + minute
        ));
    }
    std::fs::write(imports.join("7203.T.1m.csv"), &csv).unwrap();
    std::fs::write(
        imports.join("6758.T.1m.csv"),
        "time,open,high,low,close,volume\n2025-11-28 09:00,3000,3010,2990,3005,100\n2025-11-28 12:00,3000,3010,2990,3005,100\n",
    )
    .unwrap();
    let mut settings =
        crate::common::settings(&manifest_importing(dir.path(), &imports), dir.path());
    settings.components = Vec::new();
    settings.engine.max_instance_memory = 128 << 20;
    settings.request_timeout = std::time::Duration::from_secs(30);
    settings.variables.extend([
        ("admin_token".into(), ADMIN_TOKEN.into()),
        ("replay_date".into(), TEST_REPLAY_DATE.into()),
    ]);
    let host = start(&settings).await;
    let base = format!("http://{}", host.addr);

    let index = view(&base, "/api/v1/data/import").await;
    assert_eq!(
        index["files"]["7203.T.1m.csv"]["status"], "imported",
        "{index}"
    );
    let refused = &index["files"]["6758.T.1m.csv"];
    assert_eq!(refused["errors"][0]["line"], 3, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "time");
    let series: Vec<(&str, &str)> = index["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["symbol"].as_str().unwrap(),
                s["interval"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        series,
        [("7203.T", "1d"), ("7203.T", "1m")],
        "the minutes and their day"
    );

    // 09:05 JST: the bars that have closed, from the import.
    set_clock(
        &base,
        json!({"mode": "replay", "as_of": "2025-11-28T00:05:00Z", "market": "tse", "interval": "1m"}),
    )
    .await;
    let bars = view(&base, "/api/v1/data/stocks/7203.T?interval=1m").await;
    assert_eq!(bars["source"], "import");
    assert_eq!(bars["bars"].as_array().unwrap().len(), 5, "09:00 to 09:04");
    assert_eq!(bars["bars"][4]["close"], "2504.5000");
    let order = json!({
        "client_order_id": "toyota-0905", "symbol": "7203.T", "side": "buy",
        "type": "market", "quantity": 100,
    });
    let (status, placed) = trade(&base, TRADER, order).await;
    assert_eq!(status, 201, "{placed}");
    advance(&base, "bar").await;
    let (status, _) = sync(&base).await;
    assert_eq!(status, 200);
    let record = order_of(&base, &placed).await;
    let fill = &record["fills"][0];
    assert_eq!(fill["at"], "2025-11-28T00:05:00Z", "{record}");
    // The 09:05 bar opens at 2505; 5 bps of slippage, in yen.
    assert_eq!(
        (fill["price"].as_str(), fill["currency"].as_str()),
        (Some("2506.2525"), Some("JPY"))
    );

    // The import route: admin only, every row checked, all or nothing.
    let sony = "symbol,time,open,high,low,close,volume\n6758.T,2025-11-28 09:00,3000,3010,2990,3005,100\n6758.T,2025-11-28 09:05,3005,3001,2990,3000,100\n";
    let (status, body) = import(&base, "interval=5m", sony, false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = import(&base, "interval=5m", sony, true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-csv")),
        "{body}"
    );
    assert_eq!(body["errors"][0]["line"], 3, "{body}");
    assert_eq!(body["errors"][0]["field"], "row", "high below the open");
    let (status, body) = import(&base, "interval=7m", sony, true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("unsupported-interval")),
        "{body}"
    );
    let after = view(&base, "/api/v1/data/import").await;
    assert_eq!(after["series"], index["series"], "nothing taken");
    let fixed = sony.replace("3005,3001,2990,3000", "3005,3011,2990,3000");
    let (status, body) = import(&base, "interval=5m", &fixed, true).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rows"], 2);
    let bars = view(&base, "/api/v1/data/stocks/6758.T?interval=5m").await;
    assert_eq!(
        bars["bars"].as_array().map(Vec::len),
        Some(1),
        "the 09:05 bar closes at 09:10: {bars}"
    );
}

/// BTC/USD through the host: a quantity of 150 is 150 contracts of 0.0001
/// coin; the position is 0.015 BTC, valued per coin in dollars and in yen.
#[tokio::test]
async fn bitcoin_is_bought_in_contracts_of_a_ten_thousandth_of_a_coin() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    let exchange = view(&base, "/api/v1/data/exchanges/crypto").await;
    assert_eq!(exchange["contract_size"], "0.0001", "{exchange}");
    set_clock(
        &base,
        json!({"mode": "replay", "as_of": "2017-09-15T10:00:00Z", "market": "crypto", "interval": "1h"}),
    )
    .await;
    let order = json!({
        "client_order_id": "btc-1", "symbol": "BTC-USD", "side": "buy",
        "type": "market", "quantity": 150,
    });
    let (status, placed) = trade(&base, TRADER, order).await;
    assert_eq!(status, 201, "{placed}");
    advance(&base, "bar").await;
    let (status, _) = sync(&base).await;
    assert_eq!(status, 200);
    let positions = view(&base, "/api/v1/execution/positions").await;
    let btc = &positions["positions"][0];
    assert_eq!(
        (btc["symbol"].as_str(), btc["quantity"].as_u64()),
        (Some("BTC-USD"), Some(150))
    );
    let bar = view(
        &base,
        "/api/v1/data/stocks/BTC-USD?interval=1h&from=2017-09-15",
    )
    .await;
    let last = bar["bars"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ts"], 1_505_469_600, "the 10:00 bar: {last}");
    let close = price(&last["close"]);
    // 0.015 BTC at the close, in dollars.
    let value = price(&btc["market_value"]).ticks();
    assert_eq!(value, (i128::from(close.ticks()) * 150 / 10_000) as i64);
    let average = price(&btc["average_price"]);
    let open = price(&last["open"]);
    assert!(
        average.ticks() > open.ticks() && average.ticks() < open.ticks() / 1000 * 1001,
        "per coin, the open plus slippage and commission: {average} vs {open}"
    );
}

/// With the pair's bars at hand (here imported: no bundled series has the
/// yen), a dollar fill converts at USD/JPY's last close before it and the
/// account is valued at the clock's, not at the configured rate.
#[tokio::test]
async fn the_clocks_usd_jpy_values_a_yen_account() {
    let dir = tempfile::tempdir().unwrap();
    let host = start(&project(dir.path())).await;
    let base = format!("http://{}", host.addr);
    let csv = "time,open,high,low,close,volume\n2010-08-18,85.9,86.1,85.2,85.4,0\n2010-08-19,85.4,85.6,85.1,85.25,0\n2010-08-20,85.25,85.9,85.2,85.6,0\n";
    let (status, body) = import(&base, "interval=1d&symbol=USDJPY%3DX", csv, true).await;
    assert_eq!(status, 201, "{body}");
    set_clock(
        &base,
        json!({"mode": "replay", "as_of": "2010-08-19", "market": "us"}),
    )
    .await;
    let (status, placed) = trade(&base, TRADER, market_buy("usd-1", "AAPL", 10)).await;
    assert_eq!(status, 201, "{placed}");
    advance(&base, "day").await;
    let (status, _) = sync(&base).await;
    assert_eq!(status, 200);
    let record = order_of(&base, &placed).await;
    let fill = &record["fills"][0];
    assert_eq!(
        fill["rate"], "85.2500",
        "the 19th's close, before the 20th's open: {fill}"
    );
    assert_eq!(fill["conversion"]["rate"], "85.2500");
    // Sold by the close (flat by the close): the dollars left are valued at
    // the 19th's close still, as the FX day of the 20th ends at 17:00 New
    // York, an hour after the US close; a day later, at the 20th's.
    let dollars = |positions: &Value| {
        positions["balances"]["by_currency"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["currency"] == "USD")
            .map(|c| c["rate"].clone())
    };
    let positions = view(&base, "/api/v1/execution/positions").await;
    assert_eq!(dollars(&positions), Some(json!("85.2500")), "{positions}");
    advance(&base, "day").await;
    let (status, _) = sync(&base).await;
    assert_eq!(status, 200);
    let positions = view(&base, "/api/v1/execution/positions").await;
    assert_eq!(dollars(&positions), Some(json!("85.6000")), "{positions}");
}
