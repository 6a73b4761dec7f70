//! Day trading on the book: orders decided inside a session work from the
//! next bar (the lunch break's from 12:30), auction orders, stops and loss
//! limits within the day, flat by the close, brackets; and, over random
//! replayed sessions, no position or working entry outlives its session
//! and no fill uses a bar that opened before its decision.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use market_data::{Bar, Interval, Market, Price};
use proptest::prelude::*;
use trading::book::{OrderRequest, day_end};
use trading::{
    Book, Context, Currency, FxRates, MarketView, Money, OrderKind, OrderStatus, Origin,
    PaperBroker, RiskLimits, SessionPolicy, Side, TimeInForce, TradingState,
};

const TOYOTA: &str = "7203.T";
const FORD: &str = "F";

fn px(s: &str) -> Price {
    s.parse().unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// `hh:mm` local time of `day` in `market`, as an instant.
fn local(market: Market, day: NaiveDate, hh: u32, mm: u32) -> DateTime<Utc> {
    let open = market.session_open(day);
    let offset = market.utc_offset(open);
    (day.and_hms_opt(hh, mm, 0).unwrap() - Duration::seconds(offset)).and_utc()
}

fn bar_at(day: NaiveDate, ts: DateTime<Utc>, o: &str, h: &str, l: &str, c: &str) -> Bar {
    Bar {
        date: day,
        ts: ts.timestamp(),
        open: px(o),
        high: px(h),
        low: px(l),
        close: px(c),
        volume: 10_000_000,
    }
}

/// The TSE's hourly bars of `day` from `hours` (local hours of their opens,
/// 12 meaning 12:30), each `(open, high, low, close)`.
/// The day before's last hourly bar comes first (at the first bar's open):
/// a decision before the open has a price.
fn tse_hours(day: NaiveDate, bars: &[(u32, [&str; 4])]) -> Vec<Bar> {
    let before = Market::Tse.previous_trading_day(day);
    let close = Market::Tse.close_of(before).unwrap();
    let first = bars[0].1[0];
    let yesterday = bar_at(
        before,
        close - Duration::minutes(30),
        first,
        first,
        first,
        first,
    );
    std::iter::once(yesterday)
        .chain(bars.iter().map(|(h, [o, hi, lo, c])| {
            let ts = if *h == 12 {
                local(Market::Tse, day, 12, 30)
            } else {
                local(Market::Tse, day, *h, 0)
            };
            bar_at(day, ts, o, hi, lo, c)
        }))
        .collect()
}

fn ctx(at: DateTime<Utc>, symbol: &str, bars: &[Bar], interval: Interval) -> Context {
    let market = trading::book::market_of(symbol);
    let visible: Vec<Bar> = bars
        .iter()
        .filter(|b| {
            let open = DateTime::from_timestamp(b.ts, 0).unwrap();
            market.bar_times(open, interval).close <= at
        })
        .copied()
        .collect();
    let mut view = MarketView::replay(
        market.last_closed_day(at),
        at,
        BTreeMap::from([(symbol.to_string(), visible)]),
    );
    view.intervals.insert(symbol.to_string(), interval);
    Context {
        fx: FxRates::parse(Currency::JPY, "USDJPY=100").unwrap(),
        limits: RiskLimits {
            max_position_value: Money::units(100_000_000),
            max_order_notional: Money::units(100_000_000),
            ..RiskLimits::default()
        },
        broker: PaperBroker::default(),
        session_policy: SessionPolicy::Queue,
        market: view,
    }
}

/// A replay context on TSE hourly `bars` at `hh:mm` JST of `day`.
fn tse(day: NaiveDate, hh: u32, mm: u32, bars: &[Bar]) -> Context {
    ctx(
        local(Market::Tse, day, hh, mm),
        TOYOTA,
        bars,
        Interval::OneHour,
    )
}

fn order(id: &str, symbol: &str, side: Side, quantity: u64) -> OrderRequest {
    OrderRequest {
        client_order_id: id.into(),
        symbol: symbol.into(),
        side,
        kind: OrderKind::Market,
        time_in_force: TimeInForce::Day,
        quantity: Some(quantity),
        stop_loss: None,
        take_profit: None,
    }
}

fn book() -> Book {
    Book::new(Money::units(10_000_000))
}

/// A TSE day before the 2024-11-05 change (close 15:00) and one after (15:30).
fn old_day() -> NaiveDate {
    date(2024, 10, 31)
}
fn new_day() -> NaiveDate {
    date(2025, 11, 28)
}

#[test]
fn an_order_in_the_lunch_break_fills_on_the_1230_bar() {
    let day = new_day();
    let bars = tse_hours(
        day,
        &[
            (9, ["2500", "2510", "2490", "2505"]),
            (10, ["2505", "2515", "2500", "2510"]),
            (11, ["2510", "2512", "2508", "2511"]),
            (12, ["2520", "2530", "2515", "2525"]),
        ],
    );
    let noon = local(Market::Tse, day, 12, 0);
    let mut b = book();
    let c = ctx(noon, TOYOTA, &bars, Interval::OneHour);
    let placed = b
        .submit(&c, order("lunch", TOYOTA, Side::Buy, 100), Origin::Api)
        .unwrap();
    assert_eq!(placed.record.order.status, OrderStatus::Accepted);
    assert_eq!(placed.record.expires_at, local(Market::Tse, day, 15, 30));
    b.sync(&tse(day, 13, 30, &bars));
    let filled = &b.orders[&placed.record.order.id];
    assert_eq!(
        filled.fills[0].at,
        local(Market::Tse, day, 12, 30),
        "the afternoon's first bar"
    );
    assert_eq!(filled.fills[0].date, day, "the same day, not tomorrow");
    assert_eq!(
        filled.fills[0].execution.price,
        px("2521.26"),
        "its open plus 5 bps"
    );
}

/// At-open fills at the day's first bar's open, at-close at the last bar's
/// close, where the close is 15:00 before 2024-11-05 and 15:30 after; on
/// daily bars they are the day trade of the bundled US equities.
#[test]
fn auction_orders_fill_at_the_open_and_in_the_closing_auction() {
    for (day, close) in [(old_day(), (15, 0)), (new_day(), (15, 30))] {
        let last_hour = if close.1 == 0 { 14 } else { 15 };
        let bars = tse_hours(
            day,
            &[
                (9, ["2500", "2510", "2490", "2505"]),
                (10, ["2505", "2515", "2500", "2510"]),
                (last_hour, ["2510", "2520", "2500", "2518"]),
            ],
        );
        let before_open = local(Market::Tse, day, 8, 0);
        let mut b = book();
        let c = ctx(before_open, TOYOTA, &bars, Interval::OneHour);
        let mut moo = order("moo", TOYOTA, Side::Buy, 100);
        moo.time_in_force = TimeInForce::AtOpen;
        let moo = b.submit(&c, moo, Origin::Api).unwrap();
        let at_ten = tse(day, 10, 0, &bars);
        b.sync(&at_ten);
        let fill = b.orders[&moo.record.order.id].fills[0];
        assert_eq!(
            (fill.at, fill.execution.price),
            (local(Market::Tse, day, 9, 0), px("2501.25"))
        );
        // At 10:00 a market-on-close sell of what was bought.
        let mut moc = order("moc", TOYOTA, Side::Sell, 100);
        moc.time_in_force = TimeInForce::AtClose;
        let moc = b.submit(&at_ten, moc, Origin::Api).unwrap();
        let end = local(Market::Tse, day, close.0, close.1);
        b.sync(&ctx(end, TOYOTA, &bars, Interval::OneHour));
        let fill = b.orders[&moc.record.order.id].fills[0];
        assert_eq!(fill.at, end, "{day}: the closing auction");
        assert_eq!(
            fill.execution.price,
            px("2516.741"),
            "{day}: 2518 minus 5 bps"
        );
        assert_eq!(b.portfolio.quantity(TOYOTA), 0);
    }
    // An at-open order decided after the open waits for tomorrow's.
    let tomorrow = day_end(
        Market::Tse,
        TimeInForce::AtOpen,
        local(Market::Tse, new_day(), 9, 5),
    );
    assert_eq!(tomorrow, local(Market::Tse, date(2025, 12, 1), 15, 30));
    // FX and crypto have no auctions.
    let bars = vec![bar_at(
        date(2017, 3, 7),
        "2017-03-07T14:00:00Z".parse().unwrap(),
        "1.05",
        "1.06",
        "1.04",
        "1.055",
    )];
    let c = ctx(
        "2017-03-07T15:00:00Z".parse().unwrap(),
        "EURUSD=X",
        &bars,
        Interval::OneHour,
    );
    let mut moc = order("fx-moc", "EURUSD=X", Side::Buy, 1_000);
    moc.time_in_force = TimeInForce::AtClose;
    let err = book().submit(&c, moc, Origin::Api).unwrap_err();
    assert_eq!((err.code(), err.status()), ("unsupported-order-type", 400));
}

/// Flat by the close: on daily bars a buy at the open is sold in the
/// closing auction of the same day; past the cutoff (15:20 JST) new entries
/// are refused and working ones cancelled; with overnight holding allowed
/// the position stays.
#[test]
fn flat_by_the_close_on_daily_and_hourly_bars() {
    // Two US days on daily bars (2010-03-04 and 05).
    let us_day = |d: u32, o: &str, c: &str| {
        let day = date(2010, 3, d);
        bar_at(day, Market::Us.session_open(day), o, "13", "9", c)
    };
    let bars = vec![
        us_day(3, "10", "10"),
        us_day(4, "10.00", "10.50"),
        us_day(5, "10.5", "11"),
    ];
    for overnight in [false, true] {
        let mut b = book();
        let mut c = ctx(
            Market::Us.close_of(date(2010, 3, 3)).unwrap(),
            FORD,
            &bars,
            Interval::OneDay,
        );
        c.limits.flat_by_close = !overnight;
        c.limits.stop_loss_bps = 5_000;
        c.limits.take_profit_bps = 5_000;
        b.submit(&c, order("f", FORD, Side::Buy, 1_000), Origin::Api)
            .unwrap();
        let mut next = ctx(
            Market::Us.close_of(date(2010, 3, 4)).unwrap(),
            FORD,
            &bars,
            Interval::OneDay,
        );
        next.limits = c.limits.clone();
        b.sync(&next);
        if overnight {
            assert_eq!(b.portfolio.quantity(FORD), 1_000, "swing trading holds");
            continue;
        }
        assert_eq!(b.portfolio.quantity(FORD), 0);
        let exit = b
            .orders
            .values()
            .find(|r| r.origin == Origin::FlatByClose)
            .unwrap();
        assert_eq!(exit.order.time_in_force, TimeInForce::AtClose);
        assert_eq!(
            exit.fills[0].at,
            Market::Us.close_of(date(2010, 3, 4)).unwrap()
        );
        assert_eq!(
            exit.fills[0].execution.price,
            px("10.4947"),
            "10.49475 rounded down"
        );
        assert!(b.portfolio.realised_pnl > Money::ZERO);
    }

    // Hourly TSE: at 15:20 entries are refused; a working buy limit is
    // cancelled; the position is sold at the 15:00 bar's close (15:30).
    let day = new_day();
    let bars = tse_hours(
        day,
        &[
            (9, ["2500", "2510", "2490", "2505"]),
            (14, ["2505", "2515", "2500", "2510"]),
            (15, ["2510", "2520", "2505", "2515"]),
        ],
    );
    let mut b = book();
    let c = tse(day, 9, 0, &bars);
    b.submit(&c, order("t-1", TOYOTA, Side::Buy, 100), Origin::Api)
        .unwrap();
    let mut limit = order("t-2", TOYOTA, Side::Buy, 100);
    limit.kind = OrderKind::Limit {
        limit_price: px("2000"),
    };
    let limit = b.submit(&c, limit, Origin::Api).unwrap();
    let late = tse(day, 15, 20, &bars);
    let refused = b
        .submit(&late, order("t-3", TOYOTA, Side::Buy, 100), Origin::Api)
        .unwrap_err();
    assert_eq!(refused.code(), "after-cutoff");
    assert_eq!(
        b.orders[&limit.record.order.id].order.status,
        OrderStatus::Cancelled
    );
    assert_eq!(b.portfolio.quantity(TOYOTA), 100, "held until the close");
    b.sync(&tse(day, 15, 30, &bars));
    assert_eq!(b.portfolio.quantity(TOYOTA), 0, "flat at the close");
    let exit = b
        .orders
        .values()
        .find(|r| r.origin == Origin::FlatByClose)
        .unwrap();
    assert_eq!(exit.fills[0].at, local(Market::Tse, day, 15, 30));
    // After the close, tomorrow's entries are accepted again.
    let evening = tse(day, 18, 0, &bars);
    assert!(
        b.submit(&evening, order("t-4", TOYOTA, Side::Buy, 100), Origin::Api)
            .is_ok()
    );
}

/// The stop fires on the entry's day on the next hourly bar; the daily
/// loss limit trips on the bar that reaches it and switches to REDUCING;
/// HALTED cancels the working entries and the stop still fires.
#[test]
fn stops_and_loss_limits_work_within_the_day() {
    let day = new_day();
    let bars = tse_hours(
        day,
        &[
            (9, ["2500", "2510", "2490", "2505"]),
            (10, ["2505", "2510", "2300", "2320"]),
            (11, ["2320", "2330", "2310", "2325"]),
        ],
    );
    let mut b = book();
    let mut c = ctx(
        local(Market::Tse, day, 9, 0) - Duration::minutes(30),
        TOYOTA,
        &bars,
        Interval::OneHour,
    );
    c.limits.max_daily_loss = Money::units(15_000);
    b.submit(&c, order("s-1", TOYOTA, Side::Buy, 400), Origin::Api)
        .unwrap();
    let mut at_11 = tse(day, 11, 0, &bars);
    at_11.limits = c.limits.clone();
    b.sync(&at_11);
    let stop = b
        .orders
        .values()
        .find(|r| r.origin == Origin::StopLoss)
        .unwrap();
    assert_eq!(
        stop.fills[0].at,
        local(Market::Tse, day, 10, 0),
        "the entry's day, the next bar"
    );
    assert_eq!(b.portfolio.quantity(TOYOTA), 0);
    assert_eq!(
        b.state,
        TradingState::Reducing,
        "400 × ~50 yen lost is over ¥15,000"
    );
    assert_eq!(b.state_changes[0].by, "risk-engine");

    // HALTED (keep exits): the working buy is cancelled, the stop fires.
    let mut b = book();
    let c = tse(day, 8, 30, &bars);
    b.submit(&c, order("h-1", TOYOTA, Side::Buy, 100), Origin::Api)
        .unwrap();
    let at_10 = tse(day, 10, 0, &bars);
    b.sync(&at_10);
    let mut limit = order("h-2", TOYOTA, Side::Buy, 100);
    limit.kind = OrderKind::Limit {
        limit_price: px("2000"),
    };
    let working = b.submit(&at_10, limit, Origin::Api).unwrap();
    b.set_state(&at_10, TradingState::Halted, "operator".into());
    assert_eq!(
        b.orders[&working.record.order.id].order.status,
        OrderStatus::Cancelled
    );
    b.sync(&tse(day, 11, 0, &bars));
    assert!(
        b.orders
            .values()
            .any(|r| r.origin == Origin::StopLoss && !r.fills.is_empty())
    );
    assert_eq!(b.portfolio.quantity(TOYOTA), 0);
}

/// A bracket's own exits replace the account's rule; the take-profit leg
/// fills and the stop leg is gone with the position.
#[test]
fn a_bracket_sets_the_positions_exits() {
    let day = new_day();
    let bars = tse_hours(
        day,
        &[
            (9, ["2500", "2510", "2490", "2505"]),
            (10, ["2505", "2560", "2500", "2550"]),
            (11, ["2550", "2551", "2400", "2410"]),
        ],
    );
    let mut b = book();
    let c = tse(day, 8, 30, &bars);
    let mut bracket = order("b-1", TOYOTA, Side::Buy, 100);
    bracket.stop_loss = Some(px("2450"));
    bracket.take_profit = Some(px("2550"));
    let placed = b.submit(&c, bracket, Origin::Api).unwrap();
    b.sync(&tse(day, 10, 0, &bars));
    let exits = b.exits[TOYOTA].clone();
    assert_eq!(
        (exits.stop_loss, exits.take_profit),
        (px("2450"), px("2550"))
    );
    assert_eq!(
        exits.order_id.as_deref(),
        Some(placed.record.order.id.as_str())
    );
    b.sync(&tse(day, 12, 0, &bars));
    let legs: Vec<(Origin, u64)> = b
        .orders
        .values()
        .filter(|r| matches!(r.origin, Origin::StopLoss | Origin::TakeProfit))
        .map(|r| (r.origin, r.order.filled_quantity))
        .collect();
    assert_eq!(
        legs,
        [(Origin::TakeProfit, 100)],
        "one leg, the other cancelled"
    );
    let bad = OrderRequest {
        stop_loss: Some(px("2600")),
        take_profit: Some(px("2550")),
        ..order("b-2", TOYOTA, Side::Buy, 100)
    };
    assert_eq!(
        book().submit(&c, bad, Origin::Api).unwrap_err().code(),
        "invalid-stop_loss"
    );
}

/// A bracket's legs move: while it works (the request stays what was
/// asked: a retry is still the same order), and once filled, the position's
/// exits with them; then nothing else of it changes, and an order that is
/// not a bracket has no legs to move.
#[test]
fn a_brackets_legs_are_modified_before_and_after_it_fills() {
    let day = new_day();
    let bars = tse_hours(
        day,
        &[
            (9, ["2500", "2510", "2490", "2505"]),
            (10, ["2505", "2540", "2515", "2530"]),
            (11, ["2530", "2575", "2520", "2570"]),
        ],
    );
    let mut b = book();
    let c = tse(day, 8, 30, &bars);
    let mut bracket = order("b-1", TOYOTA, Side::Buy, 100);
    bracket.stop_loss = Some(px("2450"));
    bracket.take_profit = Some(px("2550"));
    let placed = b.submit(&c, bracket.clone(), Origin::Api).unwrap();
    let id = placed.record.order.id.clone();
    let legs = |stop: Option<&str>, take: Option<&str>| trading::book::Modify {
        stop_loss: stop.map(px),
        take_profit: take.map(px),
        ..Default::default()
    };
    let modified = b.modify(&c, &id, &legs(None, Some("2600"))).unwrap();
    assert_eq!(
        modified.bracket().map(|l| (l.stop_loss, l.take_profit)),
        Some((px("2450"), px("2600")))
    );
    assert_eq!(modified.request, bracket, "the request is what was asked");
    assert!(b.submit(&c, bracket.clone(), Origin::Api).unwrap().replayed);
    let err = b.modify(&c, &id, &legs(Some("2700"), None)).unwrap_err();
    assert_eq!(err.code(), "invalid-stop_loss", "above its take-profit");

    // Filled at 09:00: the position's exits are the modified legs; at
    // 10:00 the stop is raised to lock in a gain.
    let ten = tse(day, 10, 0, &bars);
    b.sync(&ten);
    assert_eq!(b.portfolio.quantity(TOYOTA), 100);
    assert_eq!(b.exits[TOYOTA].take_profit, px("2600"));
    b.modify(&ten, &id, &legs(Some("2510"), Some("2560")))
        .unwrap();
    let exits = b.exits[TOYOTA].clone();
    assert_eq!(
        (
            exits.stop_loss,
            exits.take_profit,
            exits.order_id.as_deref()
        ),
        (px("2510"), px("2560"), Some(id.as_str()))
    );
    // A filled order's quantity or prices are not its to change.
    let more = trading::book::Modify {
        quantity: Some(200),
        stop_loss: Some(px("2500")),
        ..Default::default()
    };
    assert_eq!(
        b.modify(&ten, &id, &more).unwrap_err().code(),
        "not-modifiable"
    );
    // The 11:00 bar reaches 2560: the modified take-profit sells.
    b.sync(&tse(day, 12, 0, &bars));
    assert_eq!(b.portfolio.quantity(TOYOTA), 0);
    let sold: Vec<(Origin, Option<&str>)> = b
        .orders
        .values()
        .filter(|r| r.order.side == Side::Sell)
        .map(|r| (r.origin, r.parent.as_deref()))
        .collect();
    assert_eq!(sold, [(Origin::TakeProfit, Some(id.as_str()))]);
    // The position is gone: so are the legs.
    assert_eq!(
        b.modify(&ten, &id, &legs(Some("2500"), None))
            .unwrap_err()
            .code(),
        "not-modifiable"
    );
    let plain = b
        .submit(&ten, order("p-1", TOYOTA, Side::Buy, 100), Origin::Api)
        .unwrap();
    assert_eq!(
        b.modify(
            &ten,
            &plain.record.order.id,
            &legs(Some("2500"), Some("2600"))
        )
        .unwrap_err()
        .code(),
        "invalid-stop_loss",
        "not a bracket"
    );
    let events: Vec<_> = b.journal.iter().map(|(_, e)| e.clone()).collect();
    let mut rebuilt = Book::replay(&events);
    rebuilt.journal = b.journal.clone();
    assert_eq!(rebuilt, b, "the book is its events");
}

#[derive(Debug, Clone)]
struct Step {
    /// Minutes into the day's sessions the decision is taken at.
    minute: i64,
    side: Side,
    lots: u64,
    kind: u8,
    bracket: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (0i64..400, any::<bool>(), 1u64..5, 0u8..6, any::<bool>()).prop_map(
        |(minute, buy, lots, kind, bracket)| Step {
            minute,
            side: if buy { Side::Buy } else { Side::Sell },
            lots,
            kind,
            bracket,
        },
    )
}

/// The hourly bars (or 15-minute ones) of `day`'s sessions in `market`,
/// a random walk from `start` by `moves` (bps per bar).
fn session_bars(
    market: Market,
    day: NaiveDate,
    interval: Interval,
    start: i64,
    moves: &[i64],
) -> Vec<Bar> {
    let mut bars = Vec::new();
    let mut price = start;
    let mut k = 0;
    for s in market.sessions(day) {
        let mut open = s.open;
        while open < s.close {
            let m = moves[k % moves.len()];
            k += 1;
            let close = (price + price * m / 10_000).max(100);
            let (hi, lo) = (
                price.max(close) * 1_003 / 1_000,
                price.min(close) * 997 / 1_000,
            );
            let p = |v: i64| Price::from_ticks(v * Price::SCALE / 100);
            bars.push(Bar {
                date: day,
                ts: open.timestamp(),
                open: p(price),
                high: p(hi),
                low: p(lo),
                close: p(close),
                volume: 5_000_000,
            });
            price = close;
            open += interval.length();
        }
    }
    bars
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random orders over replayed TSE and US sessions, with flat by the
    /// close: at every session's end nothing is held and no entry works;
    /// every fill's bar opened at or after its order's decision (an
    /// at-close fill: closed after it).
    #[test]
    fn flat_at_every_session_end_and_no_fill_before_its_decision(
        tse in any::<bool>(),
        hourly in any::<bool>(),
        days in prop::collection::vec((prop::collection::vec(step(), 0..8), prop::collection::vec(-150i64..150, 1..12)), 1..5),
    ) {
        let (market, symbol, first) = if tse {
            (Market::Tse, TOYOTA, date(2025, 11, 25))
        } else {
            (Market::Us, FORD, date(2025, 11, 24))
        };
        let interval = if hourly { Interval::OneHour } else { Interval::FifteenMinutes };
        let mut b = book();
        let mut bars: Vec<Bar> = Vec::new();
        let mut day = first;
        let mut price = 250_000;
        let mut n = 0;
        for (steps, moves) in &days {
            let today = session_bars(market, day, interval, price, moves);
            price = today.last().map_or(price, |b| b.close.ticks() * 100 / Price::SCALE);
            bars.extend(today);
            let open = market.session_open(day);
            let mut steps = steps.clone();
            steps.sort_by_key(|s| s.minute);
            for s in steps {
                let at = open + Duration::minutes(s.minute);
                let c = ctx(at, symbol, &bars, interval);
                n += 1;
                let mut request = order(&format!("p-{n}"), symbol, s.side, s.lots * market.exchange().lot_size);
                let last = c.market.bars.get(symbol).and_then(|b| b.last()).map(|b| b.close);
                let Some(last) = last else { continue };
                let off = |bps: i64| Price::from_ticks(last.ticks() + last.ticks() * bps / 10_000).rounded(2, market_data::Rounding::Nearest);
                request.kind = match s.kind {
                    0 => OrderKind::Market,
                    1 => OrderKind::Limit { limit_price: off(if s.side == Side::Buy { -20 } else { 20 }) },
                    2 => OrderKind::Stop { stop_price: off(if s.side == Side::Buy { 20 } else { -20 }) },
                    3 => OrderKind::TrailingStop { trail_amount: None, trail_bps: Some(30) },
                    _ => OrderKind::Market,
                };
                request.time_in_force = match s.kind {
                    4 => TimeInForce::AtClose,
                    5 => TimeInForce::AtOpen,
                    _ => TimeInForce::Day,
                };
                if s.bracket && s.side == Side::Buy {
                    request.stop_loss = Some(off(-60));
                    request.take_profit = Some(off(60));
                }
                let _ = b.submit(&c, request, Origin::Api);
            }
            // The session's end.
            let end = market.close_of(day).unwrap();
            b.sync(&ctx(end, symbol, &bars, interval));
            prop_assert_eq!(b.portfolio.quantity(symbol), 0, "held at the close of {}", day);
            let entries: Vec<&str> = b
                .working_orders()
                // (An at-open order placed today for tomorrow is tomorrow's.)
                .filter(|r| r.order.side == Side::Buy && r.expires_at <= end)
                .map(|r| r.order.id.as_str())
                .collect();
            prop_assert!(entries.is_empty(), "entries working at the close of {}: {:?}", day, entries);
            day = market.next_trading_day(day);
        }
        // One cancels the other: no bracket has both legs filled.
        let mut legs: BTreeMap<&str, Vec<Origin>> = BTreeMap::new();
        for r in b.orders.values().filter(|r| !r.fills.is_empty()) {
            if let Some(parent) = &r.parent {
                legs.entry(parent.as_str()).or_default().push(r.origin);
            }
        }
        for (parent, filled) in &legs {
            prop_assert!(filled.len() == 1, "{}: legs {:?} filled", parent, filled);
        }
        for r in b.orders.values() {
            for f in &r.fills {
                if r.order.time_in_force == TimeInForce::AtClose {
                    prop_assert!(f.at > r.works_from, "{} filled at {} before {}", r.order.id, f.at, r.works_from);
                } else {
                    prop_assert!(f.at >= r.works_from, "{} filled at {} before {}", r.order.id, f.at, r.works_from);
                }
            }
        }
    }
}

/// Modify/replace: a working limit's price and quantity change in place
/// (and fill at the new price); what the risk engine refuses leaves the old
/// order; a finished order, or a field of another type, is refused.
#[test]
fn a_working_order_is_modified_in_place() {
    use trading::book::Modify;
    let day = new_day();
    let bars = tse_hours(
        day,
        &[
            (9, ["2500", "2510", "2490", "2505"]),
            (10, ["2505", "2510", "2470", "2480"]),
        ],
    );
    let mut b = book();
    let c = tse(day, 9, 0, &bars);
    let mut limit = order("m-1", TOYOTA, Side::Buy, 100);
    limit.kind = OrderKind::Limit {
        limit_price: px("2400"),
    };
    let id = b.submit(&c, limit, Origin::Api).unwrap().record.order.id;
    let at_10 = tse(day, 10, 0, &bars);
    let change = Modify {
        quantity: Some(300),
        limit_price: Some(px("2475")),
        ..Modify::default()
    };
    let modified = b.modify(&at_10, &id, &change).unwrap();
    assert_eq!(modified.order.quantity, 300);
    assert_eq!(modified.reference_price, px("2475"));
    let huge = Modify {
        quantity: Some(1_000_000),
        ..Modify::default()
    };
    assert_eq!(
        b.modify(&at_10, &id, &huge).unwrap_err().code(),
        "order-notional"
    );
    assert_eq!(
        b.orders[&id].order.quantity, 300,
        "the denied change left the order"
    );
    let wrong = Modify {
        stop_price: Some(px("2000")),
        ..Modify::default()
    };
    assert_eq!(
        b.modify(&at_10, &id, &wrong).unwrap_err().code(),
        "invalid-stop_price"
    );
    b.sync(&tse(day, 11, 0, &bars));
    let filled = &b.orders[&id];
    assert_eq!(filled.order.status, OrderStatus::Filled);
    assert_eq!(
        filled.fills[0].execution.price,
        px("2475"),
        "at the new limit"
    );
    let err = b.modify(&at_10, &id, &change).unwrap_err();
    assert_eq!((err.code(), err.status()), ("not-modifiable", 409));
    assert_eq!(
        b.modify(&at_10, "ord-404", &change).unwrap_err().status(),
        404
    );
    // The book is still the fold of its events.
    let mut live = b.clone();
    let events: Vec<trading::Event> = live.journal.drain(..).map(|(_, e)| e).collect();
    assert!(Book::replay(events.iter()) == live);
}

/// The close cutoff cancels the day's entries, not tomorrow's: an at-open
/// buy placed in the morning for the next opening survives it and fills.
#[test]
fn the_cutoff_leaves_tomorrows_at_open_orders() {
    let day = new_day();
    let next = Market::Tse.next_trading_day(day);
    let mut bars = tse_hours(
        day,
        &[
            (9, ["2500", "2510", "2490", "2505"]),
            (15, ["2510", "2520", "2505", "2515"]),
        ],
    );
    bars.push(bar_at(
        next,
        local(Market::Tse, next, 9, 0),
        "2520",
        "2530",
        "2515",
        "2525",
    ));
    let mut b = book();
    let mut moo = order("next-open", TOYOTA, Side::Buy, 100);
    moo.time_in_force = TimeInForce::AtOpen;
    let id = b
        .submit(&tse(day, 10, 0, &bars), moo, Origin::Api)
        .unwrap()
        .record
        .order
        .id;
    b.sync(&tse(day, 15, 25, &bars));
    assert_eq!(
        b.orders[&id].order.status,
        OrderStatus::Accepted,
        "past the cutoff, still working"
    );
    b.sync(&ctx(
        local(Market::Tse, next, 10, 0),
        TOYOTA,
        &bars,
        Interval::OneHour,
    ));
    assert_eq!(b.orders[&id].fills[0].at, local(Market::Tse, next, 9, 0));
}

/// A yen account buys dollar shares at the rate: the limits and the sizing
/// are in yen, the fill converts what the dollars lack, the sale's dollars
/// stay dollars, and equity is in yen. Without a rate nothing is bought.
#[test]
fn a_yen_account_trades_dollar_shares_at_the_rate() {
    // Bars that reach no automatic exit (2% and 5% from the entry).
    let us_day = |d: u32, o: &str, c: &str| {
        let day = date(2010, 3, d);
        let (low, high) = (px(o).min(px(c)), px(o).max(px(c)));
        let mut bar = bar_at(day, Market::Us.session_open(day), o, o, o, c);
        bar.low = low;
        bar.high = high;
        bar
    };
    let bars = vec![
        us_day(3, "15", "15"),
        us_day(4, "15.00", "15.50"),
        us_day(5, "15.5", "15.7"),
    ];
    let at = |d: u32| Market::Us.close_of(date(2010, 3, d)).unwrap();
    let with_rate = |d: u32, rates: &str| {
        let mut c = ctx(at(d), FORD, &bars, Interval::OneDay);
        c.fx = FxRates::parse(Currency::JPY, rates).unwrap();
        c.limits = RiskLimits {
            flat_by_close: false,
            max_order_notional: Money::units(2_000_000),
            ..RiskLimits::default()
        };
        c
    };
    let c = with_rate(3, "USDJPY=110");

    // Without a rate for dollars: refused, with a code.
    let mut b = book();
    let mut no_rate = c.clone();
    no_rate.fx = FxRates::default();
    let err = b
        .submit(&no_rate, order("f0", FORD, Side::Buy, 100), Origin::Api)
        .unwrap_err();
    assert_eq!((err.code(), err.status()), ("no-fx-rate", 422));
    assert!(b.orders.is_empty());

    // The position limit is ¥1,000,000: 1,000 shares at $15 are ¥1,650,000
    // (and $15,000 would pass a limit read in dollars).
    let err = b
        .submit(&c, order("f1", FORD, Side::Buy, 1_000), Origin::Api)
        .unwrap_err();
    assert_eq!(err.code(), "position-value");
    // Sized by the yen limits: ¥1,000,000 / (¥1,650 a share) = 606.
    let mut sized = order("f2", FORD, Side::Buy, 1);
    sized.quantity = None;
    let sized = b.submit(&c, sized, Origin::Api).unwrap();
    assert_eq!(sized.record.order.quantity, 606);

    b.sync(&with_rate(4, "USDJPY=110"));
    let fill = b.orders[&sized.record.order.id].fills[0];
    assert_eq!(fill.currency, Currency::USD);
    assert_eq!(fill.rate, px("110"));
    let conversion = fill.conversion.expect("yen bought the dollars");
    // $15.0075 (5 bps of slippage) × 606 and its 2 bps of commission, in
    // dollars; their yen at 110, rounded up to a tick.
    let notional = Money::notional(px("15.0075"), 606).unwrap();
    assert_eq!(fill.execution.commission, notional.bps(2));
    assert_eq!(conversion.amount, notional + notional.bps(2));
    assert_eq!(conversion.amount.to_string(), "9096.363909");
    assert_eq!(conversion.cost.to_string(), "1000600.02999");
    assert_eq!(b.portfolio.cash, Money::units(10_000_000) - conversion.cost);
    assert_eq!(b.portfolio.cash_in(Currency::USD), Money::ZERO);
    assert_eq!(b.portfolio.positions[FORD].currency, Currency::USD);
    // Equity in yen: the yen left and 606 shares at the $15.50 close.
    let equity = b.equity(&with_rate(4, "USDJPY=110").fx);
    assert_eq!(
        equity,
        b.portfolio.cash + Money::notional(px("15.5"), 606 * 110).unwrap()
    );
    assert_eq!(b.equity_curve.last().unwrap().currency, Currency::JPY);

    // Sold on the 5th at the open: the proceeds are dollars; at a dearer
    // dollar they are worth more yen.
    b.submit(
        &with_rate(4, "USDJPY=110"),
        order("f3", FORD, Side::Sell, 606),
        Origin::Api,
    )
    .unwrap();
    b.sync(&with_rate(5, "USDJPY=110"));
    let next = with_rate(5, "USDJPY=120");
    assert_eq!(b.portfolio.quantity(FORD), 0);
    let dollars = b.portfolio.cash_in(Currency::USD);
    let proceeds = Money::notional(px("15.4922"), 606).unwrap();
    assert_eq!(dollars, proceeds - proceeds.bps(2), "after the commission");
    assert_eq!(
        b.equity(&next.fx),
        b.portfolio.cash + dollars.bps(1_200_000)
    );
    // The next dollar buy spends those dollars before any yen.
    let yen = b.portfolio.cash;
    b.submit(
        &with_rate(5, "USDJPY=120"),
        order("f4", FORD, Side::Buy, 100),
        Origin::Api,
    )
    .unwrap();
    let mut later = bars.clone();
    later.push(us_day(8, "15.6", "15.6"));
    let mut c8 = ctx(at(8), FORD, &later, Interval::OneDay);
    c8.fx = FxRates::parse(Currency::JPY, "USDJPY=120").unwrap();
    c8.limits = with_rate(5, "USDJPY=120").limits;
    b.sync(&c8);
    assert_eq!(b.portfolio.quantity(FORD), 100);
    assert_eq!(b.portfolio.cash, yen, "no yen spent");
    // The clock's USD/JPY close, when the market view has the pair, comes
    // before the configured rate.
    let usdjpy = bar_at(date(2010, 3, 8), at(8), "88.5", "88.9", "88.2", "88.75");
    c8.market.bars.insert("USDJPY=X".into(), vec![usdjpy]);
    b.sync(&c8);
    assert_eq!(b.rates(&c8.fx).rate(Currency::USD), Some(px("88.75")));
    assert_eq!(
        b.equity(&c8.fx),
        b.portfolio.cash
            + trading::fx::to_base(b.portfolio.cash_in(Currency::USD), px("88.75")).unwrap()
            + trading::fx::to_base(Money::notional(px("15.6"), 100).unwrap(), px("88.75")).unwrap()
    );
    // The book is its events.
    let events: Vec<_> = b.journal.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(Book::replay(&events).portfolio, b.portfolio);
}

/// A crypto-currency trades in contracts of 0.0001 coin: 150 BTC-USD are
/// 0.015 BTC; prices stay per coin, notionals and limits are the
/// contracts', a bar's volume (in coins) caps an order in contracts, and
/// sizing counts contracts.
#[test]
fn crypto_trades_in_contracts_of_a_ten_thousandth_of_a_coin() {
    let hour = |h: u32, o: &str, c: &str| {
        let ts: DateTime<Utc> = format!("2017-09-15T{h:02}:00:00Z").parse().unwrap();
        let mut bar = bar_at(date(2017, 9, 15), ts, o, o, o, c);
        bar.low = px(o).min(px(c));
        bar.high = px(o).max(px(c));
        bar.volume = 3; // 3 BTC an hour: 30,000 contracts, 3,000 at 10%
        bar
    };
    let bars = vec![hour(9, "3700", "3710"), hour(10, "3710", "3720")];
    let at = |h: u32| -> DateTime<Utc> { format!("2017-09-15T{h:02}:00:00Z").parse().unwrap() };
    let mut c = ctx(at(10), "BTC-USD", &bars, Interval::OneHour);
    c.fx = FxRates::parse(Currency::JPY, "USDJPY=110").unwrap();
    c.limits.flat_by_close = false;
    let mut b = book();
    let placed = b
        .submit(&c, order("btc-1", "BTC-USD", Side::Buy, 150), Origin::Api)
        .unwrap();
    let mut next = ctx(at(11), "BTC-USD", &bars, Interval::OneHour);
    next.fx = c.fx.clone();
    next.limits = c.limits.clone();
    b.sync(&next);
    let record = &b.orders[&placed.record.order.id];
    let fill = record.fills[0];
    // 3710 plus 5 bps, per coin; 0.015 BTC of it.
    assert_eq!(fill.execution.price, px("3711.855"));
    assert_eq!(fill.execution.quantity, 150);
    let notional = Money::notional_of(px("3711.855"), 150, px("0.0001")).unwrap();
    assert_eq!(notional.to_string(), "55.677825");
    assert_eq!(fill.execution.commission, notional.bps(2));
    assert_eq!(record.order.average_price(), Some(px("3711.855")));
    assert_eq!(
        b.portfolio.positions["BTC-USD"].entry_price("BTC-USD"),
        Some(px("3711.855"))
    );
    // The position is worth 0.015 BTC at the 3720 close, in yen.
    assert_eq!(
        b.equity(&next.fx),
        b.portfolio.cash + Money::units(3720 * 15 * 110 / 1000)
    );
    // More than a bar's 10%: 3,000 contracts (0.3 BTC) fill, the rest works.
    let big = b
        .submit(
            &next,
            order("btc-2", "BTC-USD", Side::Buy, 5_000),
            Origin::Api,
        )
        .unwrap();
    let mut later = bars.clone();
    later.push(hour(11, "3720", "3725"));
    let mut noon = ctx(at(12), "BTC-USD", &later, Interval::OneHour);
    noon.fx = c.fx.clone();
    noon.limits = c.limits.clone();
    b.sync(&noon);
    assert_eq!(b.orders[&big.record.order.id].order.filled_quantity, 3_000);
    // Sized in contracts by the stop-distance rule, in yen: 1% of ¥10M at
    // risk over a 2% stop on ¥2.75 a contract (250 × 0.0001 × 110).
    let mut sized = order("btc-3", "ETH-USD", Side::Buy, 1);
    sized.quantity = None;
    let eth = vec![hour(11, "250", "250")];
    let mut e = ctx(at(12), "ETH-USD", &eth, Interval::OneHour);
    e.fx = c.fx.clone();
    let sized = book().submit(&e, sized, Origin::Api).unwrap();
    // ¥100,000 / ¥0.055 = 1,818,181 contracts: 181.8 ETH.
    assert_eq!(sized.record.order.quantity, 1_818_181);
}

/// The rate a fill converts at is the pair's last close before the fill:
/// a dollar buy at Monday's open pays Friday's USD/JPY close, not Monday's.
#[test]
fn a_fill_converts_at_the_rate_of_its_time() {
    let us = |d: u32, o: &str| {
        let day = date(2010, 3, d);
        bar_at(day, Market::Us.session_open(day), o, o, o, o)
    };
    // FX days end at 17:00 New York (22:00 UTC before the 14 March switch).
    let fx = |d: u32, c: &str| {
        let day = date(2010, 3, d);
        let opens = Market::Fx.session_open(day);
        bar_at(day, opens, c, c, c, c)
    };
    let view = |d: u32, f: Vec<Bar>, usdjpy: Vec<Bar>| {
        let mut c = ctx(
            Market::Us.close_of(date(2010, 3, d)).unwrap(),
            FORD,
            &f,
            Interval::OneDay,
        );
        c.market.bars.insert("USDJPY=X".into(), usdjpy);
        c.fx = FxRates::parse(Currency::JPY, "USDJPY=100").unwrap();
        c.limits.flat_by_close = false;
        c
    };
    let friday = view(5, vec![us(5, "15")], vec![fx(5, "88")]);
    let mut b = book();
    b.submit(&friday, order("f", FORD, Side::Buy, 100), Origin::Api)
        .unwrap();
    assert_eq!(b.rates(&friday.fx).rate(Currency::USD), Some(px("88")));
    let monday = view(
        8,
        vec![us(5, "15"), us(8, "15")],
        vec![fx(5, "88"), fx(8, "90")],
    );
    b.sync(&monday);
    let fill = b.orders.values().next().unwrap().fills[0];
    assert_eq!(fill.at, Market::Us.session_open(date(2010, 3, 8)));
    assert_eq!(
        fill.rate,
        px("88"),
        "Friday's close: Monday's FX day is not over"
    );
    assert_eq!(
        b.rates(&monday.fx).rate(Currency::USD),
        Some(px("90")),
        "by Monday's close"
    );
    let events: Vec<_> = b.journal.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(Book::replay(&events).portfolio, b.portfolio);
}
