//! The book on the replay clock: queued orders fill on the next bar, exits
//! fire, loss limits switch the state, idempotency holds, and the ledger's
//! transactions keep limits under concurrent submissions.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use market_data::{Bar, Interval, Market, Price};
use trading::book::{Notice, OrderRequest};
use trading::ledger::{Ledger, MemoryStore};
use trading::{
    Book, Context, FxRates, HaltPolicy, MarketView, Money, OrderKind, OrderStatus, Origin,
    PaperBroker, RiskLimits, SessionPolicy, Side, SubmitError, TimeInForce, TradingState,
};

const SYMBOL: &str = "7203.T";

fn d(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 3, day).unwrap()
}

fn px(s: &str) -> Price {
    s.parse().unwrap()
}

/// The close of a TSE trading day in March 2024 (15:00 JST then).
fn close(day: u32) -> DateTime<Utc> {
    Market::Tse.close_of(d(day)).unwrap()
}

fn bar(day: u32, open: &str, high: &str, low: &str, close: &str) -> Bar {
    Bar {
        date: d(day),
        ts: Market::Tse.session_open(d(day)).timestamp(),
        open: px(open),
        high: px(high),
        low: px(low),
        close: px(close),
        volume: 5_000_000,
    }
}

/// A replay context after the close of the last of `bars` of SYMBOL.
/// These tests hold positions over days (swing trading: no flat by the
/// close); day trading is `intraday.rs`'s.
fn ctx(bars: &[Bar]) -> Context {
    let as_of = bars.last().map_or(d(1), |b| b.date);
    let mut market = MarketView::replay(
        as_of,
        close(as_of.day()),
        BTreeMap::from([(SYMBOL.to_string(), bars.to_vec())]),
    );
    market.now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
    Context {
        fx: FxRates::default(),
        limits: RiskLimits {
            flat_by_close: false,
            ..RiskLimits::default()
        },
        broker: PaperBroker::default(),
        session_policy: SessionPolicy::Queue,
        market,
    }
}

/// A new account's ledger on an in-memory store.
fn ledger() -> Ledger<MemoryStore> {
    Ledger::new(
        MemoryStore::default(),
        "acct",
        Book::new(Money::units(10_000_000)),
    )
}

fn buy(id: &str, quantity: u64) -> OrderRequest {
    OrderRequest {
        client_order_id: id.into(),
        symbol: SYMBOL.into(),
        side: Side::Buy,
        kind: OrderKind::Market,
        time_in_force: TimeInForce::Day,
        quantity: Some(quantity),
        stop_loss: None,
        take_profit: None,
    }
}

fn week() -> Vec<Bar> {
    vec![
        bar(4, "2500", "2520", "2480", "2500"),
        bar(5, "2510", "2530", "2490", "2520"),
        bar(6, "2520", "2540", "2500", "2530"),
        // Falls through the 2% stop (entry ≈ 2511.3 → stop ≈ 2461.0).
        bar(7, "2500", "2505", "2400", "2420"),
    ]
}

#[test]
fn a_queued_market_order_fills_at_the_next_open_and_exits_at_its_stop() {
    let bars = week();
    let mut book = Book::new(Money::units(10_000_000));
    let submitted = book
        .submit(&ctx(&bars[..1]), buy("a-1", 300), Origin::Api)
        .unwrap();
    assert_eq!(submitted.record.order.status, OrderStatus::Accepted);
    assert_eq!(
        submitted.record.works_from,
        close(4),
        "decided after day 4's close"
    );

    book.sync(&ctx(&bars[..2]));
    let order = &book.orders[&submitted.record.order.id];
    assert_eq!(order.order.status, OrderStatus::Filled);
    assert_eq!(order.fills[0].date, d(5), "the next trading day's open");
    // Open 2510 plus 5 bps slippage = 2511.255, rounded up to the tick.
    assert_eq!(order.fills[0].execution.price, px("2511.255"));
    assert_eq!(book.portfolio.quantity(SYMBOL), 300);
    let exits = book.exits[SYMBOL].clone();
    assert!(exits.stop_loss < px("2511.255") && exits.take_profit > px("2511.255"));

    book.sync(&ctx(&bars));
    assert_eq!(book.portfolio.quantity(SYMBOL), 0, "stopped out on day 7");
    let exit = book
        .orders
        .values()
        .find(|r| r.origin == Origin::StopLoss)
        .expect("a stop-loss order");
    assert_eq!(exit.order.status, OrderStatus::Filled);
    assert!(
        exit.fills[0].execution.price < exits.stop_loss,
        "stop minus slippage"
    );
    assert!(book.portfolio.realised_pnl.is_negative());
    let curve: Vec<NaiveDate> = book.equity_curve.iter().map(|p| p.date).collect();
    assert_eq!(curve, [d(6), d(7)], "the book keeps the last two days");
    assert_eq!(book.equity_since, Some(d(4)));
    assert!(book.outbox.iter().any(|(_, n)| matches!(
        n,
        Notice::Filled {
            origin: Origin::StopLoss,
            ..
        }
    )));
}

#[test]
fn the_same_client_order_id_is_the_same_order() {
    let bars = week();
    let c = ctx(&bars[..1]);
    let mut book = Book::new(Money::units(10_000_000));
    let first = book.submit(&c, buy("same", 100), Origin::Api).unwrap();
    let again = book.submit(&c, buy("same", 100), Origin::Api).unwrap();
    assert!(again.replayed && !first.replayed);
    assert_eq!(again.record.order.id, first.record.order.id);
    assert_eq!(book.orders.len(), 1);
    let err = book.submit(&c, buy("same", 200), Origin::Api).unwrap_err();
    assert_eq!(err.code(), "idempotency-conflict");
    assert_eq!(err.status(), 409);

    // A denied order is remembered too: its retry is denied the same way.
    let huge = book
        .submit(&c, buy("big", 10_000), Origin::Api)
        .unwrap_err();
    let retry = book
        .submit(&c, buy("big", 10_000), Origin::Api)
        .unwrap_err();
    assert_eq!(huge.code(), "order-notional");
    assert_eq!(huge, retry);
    assert_eq!(book.orders.len(), 2);
}

#[test]
fn working_orders_reserve_what_they_would_use() {
    let bars = week();
    let c = ctx(&bars[..1]);
    let mut book = Book::new(Money::units(10_000_000));
    // ¥1,000,000 per symbol: 300 shares at 2500 is ¥750,000; a second 200 would make ¥1,250,000.
    book.submit(&c, buy("r-1", 300), Origin::Api).unwrap();
    let err = book.submit(&c, buy("r-2", 200), Origin::Api).unwrap_err();
    assert_eq!(err.code(), "position-value");
    book.submit(&c, buy("r-3", 100), Origin::Api).unwrap();
}

#[test]
fn a_daily_loss_switches_to_reducing_and_reducing_only_lets_exposure_shrink() {
    let bars = vec![
        bar(4, "2500", "2520", "2480", "2500"),
        bar(5, "2500", "2520", "2480", "2500"),
        // A 20% gap down in one day on ¥1m of stock is a ¥200k loss.
        bar(6, "2000", "2010", "1990", "2000"),
    ];
    let mut c = ctx(&bars[..1]);
    c.limits.stop_loss_bps = 9_000; // keep the stop out of the way
    c.limits.max_order_notional = Money::units(10_000_000);
    c.limits.max_position_value = Money::units(10_000_000);
    let mut book = Book::new(Money::units(10_000_000));
    book.submit(&c, buy("l-1", 1_200), Origin::Api).unwrap();
    c.market = ctx(&bars).market;
    book.sync(&c);
    assert_eq!(book.portfolio.quantity(SYMBOL), 1_200);
    assert!(book.daily_pnl(&FxRates::default()) <= -Money::units(50_000));
    assert_eq!(book.state, TradingState::Reducing);
    assert_eq!(book.state_changes[0].by, "risk-engine");

    let err = book.submit(&c, buy("l-2", 100), Origin::Api).unwrap_err();
    assert_eq!(err.code(), "reduce-only");
    let sell = OrderRequest {
        side: Side::Sell,
        ..buy("l-3", 1_200)
    };
    book.submit(&c, sell, Origin::Api).unwrap();

    book.set_state(&c, TradingState::Halted, "kill switch".into());
    let sell_more = OrderRequest {
        side: Side::Sell,
        ..buy("l-4", 100)
    };
    match book.submit(&c, sell_more, Origin::Api) {
        Err(SubmitError::Denied(record)) => {
            assert_eq!(record.denial.unwrap().code(), "halted");
        }
        other => panic!("expected a halted denial, got {other:?}"),
    }
    let changes: Vec<TradingState> = book.state_changes.iter().map(|c| c.to).collect();
    assert_eq!(changes, [TradingState::Reducing, TradingState::Halted]);
}

/// What leaving ACTIVE does, per state and halt policy: the working buy is
/// cancelled in REDUCING and HALTED; the working sell stays unless HALTED
/// flattens; the protective stop still fires in HALTED; `flatten` sells the
/// position at the next bar's open, however large against the bar's volume.
#[test]
fn reducing_and_halted_cancel_entries_and_keep_the_exits_armed() {
    struct Case {
        to: TradingState,
        policy: HaltPolicy,
        /// (working buy, working sell) status after the change.
        after_change: (OrderStatus, OrderStatus),
        /// Shares held after day 7's bar (the stop's day).
        held_after: u64,
        exit_origin: Origin,
    }
    let cases = [
        Case {
            to: TradingState::Reducing,
            policy: HaltPolicy::KeepExits,
            after_change: (OrderStatus::Cancelled, OrderStatus::Accepted),
            held_after: 0,
            exit_origin: Origin::StopLoss,
        },
        Case {
            to: TradingState::Halted,
            policy: HaltPolicy::KeepExits,
            after_change: (OrderStatus::Cancelled, OrderStatus::Accepted),
            held_after: 0,
            exit_origin: Origin::StopLoss,
        },
        Case {
            to: TradingState::Halted,
            policy: HaltPolicy::Flatten,
            after_change: (OrderStatus::Cancelled, OrderStatus::Cancelled),
            held_after: 0,
            exit_origin: Origin::KillSwitch,
        },
    ];
    let bars = week();
    for case in cases {
        let name = format!("{:?} {:?}", case.to, case.policy);
        let mut c = ctx(&bars[..1]);
        c.limits.on_halt = case.policy;
        c.limits.max_position_value = Money::units(10_000_000);
        let mut book = Book::new(Money::units(10_000_000));
        book.submit(&c, buy("h-1", 300), Origin::Api).unwrap();
        book.sync(&ctx(&bars[..2]));
        assert_eq!(book.portfolio.quantity(SYMBOL), 300, "{name}");
        // Day 5's close: another buy and a limit sell far above, both working.
        let c5 = Context {
            limits: c.limits.clone(),
            fx: c.fx.clone(),
            ..ctx(&bars[..2])
        };
        let entry = book.submit(&c5, buy("h-2", 100), Origin::Api).unwrap();
        let exit = OrderRequest {
            side: Side::Sell,
            kind: OrderKind::Limit {
                limit_price: px("9000"),
            },
            ..buy("h-3", 100)
        };
        let exit = book.submit(&c5, exit, Origin::Api).unwrap();
        book.set_state(&c5, case.to, "operator".into());
        let status = |b: &Book, id: &str| b.orders[id].order.status;
        assert_eq!(
            (
                status(&book, &entry.record.order.id),
                status(&book, &exit.record.order.id)
            ),
            case.after_change,
            "{name}"
        );
        // Days 6 and 7: the position is sold by the stop (day 7) or by the
        // kill switch at day 6's open; nothing is bought.
        let c7 = Context {
            limits: c.limits.clone(),
            fx: c.fx.clone(),
            ..ctx(&bars)
        };
        book.sync(&c7);
        assert_eq!(book.portfolio.quantity(SYMBOL), case.held_after, "{name}");
        let sold_by: Vec<(Origin, NaiveDate)> = book
            .orders
            .values()
            .filter(|r| r.order.side == Side::Sell && !r.fills.is_empty())
            .map(|r| (r.origin, r.fills[0].date))
            .collect();
        let day = if case.exit_origin == Origin::KillSwitch {
            d(6)
        } else {
            d(7)
        };
        assert_eq!(sold_by, [(case.exit_origin, day)], "{name}");
        let bought: u64 = book
            .orders
            .values()
            .filter(|r| r.order.side == Side::Buy)
            .map(|r| r.order.filled_quantity)
            .sum();
        assert_eq!(bought, 300, "{name}: no entry after the change");
    }
}

/// The kill switch's sell is whole even where the bar's volume would cap an
/// ordinary order (10% participation).
#[test]
fn flatten_sells_everything_at_the_next_open() {
    let thin = |day, price: &str| Bar {
        volume: 1_000,
        ..bar(day, price, price, price, price)
    };
    let bars = vec![
        bar(4, "2500", "2500", "2500", "2500"),
        bar(5, "2500", "2500", "2500", "2500"),
        thin(6, "2400"),
    ];
    let mut c = ctx(&bars[..1]);
    c.limits.on_halt = HaltPolicy::Flatten;
    let mut book = Book::new(Money::units(10_000_000));
    book.submit(&c, buy("f-1", 300), Origin::Api).unwrap();
    let c5 = Context {
        limits: c.limits.clone(),
        fx: c.fx.clone(),
        ..ctx(&bars[..2])
    };
    book.sync(&c5);
    book.set_state(&c5, TradingState::Halted, "flatten".into());
    book.sync(&Context {
        limits: c.limits.clone(),
        fx: c.fx.clone(),
        ..ctx(&bars)
    });
    assert_eq!(book.portfolio.quantity(SYMBOL), 0);
    let sell = book
        .orders
        .values()
        .find(|r| r.origin == Origin::KillSwitch)
        .unwrap();
    assert_eq!(sell.fills[0].date, d(6));
    assert_eq!(sell.fills[0].execution.quantity, 300);
    assert!(book.outbox.iter().any(|(_, n)| matches!(
        n,
        Notice::Filled {
            origin: Origin::KillSwitch,
            ..
        }
    )));
}

#[test]
fn concurrent_transactions_never_breach_a_limit_or_duplicate_an_order() {
    let bars = week();
    let store = Arc::new(MemoryStore::default());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let c = ctx(&bars[..1]);
            std::thread::spawn(move || {
                let ledger = Ledger::new(&*store, "book", Book::new(Money::units(10_000_000)));
                let mut accepted = 0;
                for i in 0..10 {
                    // Everyone also sends the one shared id.
                    for id in [format!("t{t}-{i}"), "shared".to_string()] {
                        let done = ledger
                            .transact(|book| book.submit(&c, buy(&id, 100), Origin::Api))
                            .unwrap();
                        if matches!(done.value, Ok(ref s) if !s.replayed) {
                            accepted += 1;
                        }
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let book = Ledger::new(&*store, "book", Book::new(Money::ZERO))
        .read()
        .unwrap();
    // ¥1,000,000 at 2500 is 4 lots: 4 accepted (one of them may be "shared"), all the rest denied.
    let working: u64 = book.working_orders().map(|r| r.order.quantity).sum();
    assert_eq!(working, 400);
    assert_eq!(accepted, 4);
    assert_eq!(
        book.orders
            .values()
            .filter(|r| r.order.client_order_id == "shared")
            .count(),
        1
    );
    assert_eq!(
        book.orders.len(),
        8 * 10 + 1,
        "every submission recorded once"
    );
}

#[test]
fn an_order_whose_symbol_stops_trading_expires_with_its_session() {
    let bars = week();
    let mut book = Book::new(Money::units(10_000_000));
    let placed = book
        .submit(&ctx(&bars[..1]), buy("gone", 100), Origin::Api)
        .unwrap();
    // The clock moves to day 5 but the symbol has no bar there (its history ended).
    let mut later = ctx(&bars[..1]);
    later.market.as_of = Some(d(5));
    later.market.at = close(5);
    book.sync(&later);
    let order = &book.orders[&placed.record.order.id];
    assert_eq!(order.order.status, OrderStatus::Expired);
    assert!(order.fills.is_empty());
    assert_eq!(
        book.exposure(&later, SYMBOL).cash,
        Money::units(10_000_000),
        "nothing reserved"
    );
}

/// On the live clock too an order waits for the next bar: the last bar
/// closed before the decision (the fill at a stale price LEAN fixed in its
/// issue 9518). The lunch break queues by default, the reject policy refuses.
#[test]
fn live_orders_wait_for_the_next_bar_and_closed_markets_follow_the_policy() {
    // Hourly bars of Tuesday 2024-03-05: 09:00 JST closes at 2520, 10:00 opens at 2530.
    let hour = |h: u32, open: &str, close: &str| Bar {
        ts: (Market::Tse.session_open(d(5)) + chrono::Duration::hours(i64::from(h) - 9))
            .timestamp(),
        ..bar(5, open, "2540", "2490", close)
    };
    let mut live = ctx(&[hour(9, "2500", "2520")]);
    live.market.live = true;
    live.market.intervals = BTreeMap::from([(SYMBOL.to_string(), Interval::OneHour)]);
    live.market.at = Utc.with_ymd_and_hms(2024, 3, 5, 1, 0, 0).unwrap();
    let mut book = Book::new(Money::units(10_000_000));
    let placed = book.submit(&live, buy("live-1", 100), Origin::Api).unwrap();
    assert_eq!(
        placed.record.order.status,
        OrderStatus::Accepted,
        "no fill at 2520, the last close"
    );
    live.market.bars = ctx(&[hour(9, "2500", "2520"), hour(10, "2530", "2535")])
        .market
        .bars;
    live.market.at = Utc.with_ymd_and_hms(2024, 3, 5, 2, 0, 0).unwrap();
    book.sync(&live);
    let filled = &book.orders[&placed.record.order.id];
    assert_eq!(
        filled.fills[0].at,
        Utc.with_ymd_and_hms(2024, 3, 5, 1, 0, 0).unwrap()
    );
    assert_eq!(
        filled.fills[0].execution.price,
        px("2531.265"),
        "the 10:00 open plus 5 bps"
    );

    // 12:00 JST is the lunch break: queued by default, refused by the reject policy.
    live.market.at = Utc.with_ymd_and_hms(2024, 3, 5, 3, 0, 0).unwrap();
    let queued = book.submit(&live, buy("live-2", 100), Origin::Api).unwrap();
    assert_eq!(queued.record.order.status, OrderStatus::Accepted);
    assert_eq!(
        queued.record.expires_at,
        close(5),
        "a day order lasts its day"
    );
    live.session_policy = SessionPolicy::Reject;
    let refused = book
        .submit(&live, buy("live-3", 100), Origin::Api)
        .unwrap_err();
    assert_eq!(refused.code(), "market-closed");
}

#[test]
fn a_resting_limit_order_fills_when_a_later_bar_reaches_it() {
    let bars = week();
    let mut book = Book::new(Money::units(10_000_000));
    let limit = OrderRequest {
        kind: OrderKind::Limit {
            limit_price: px("2495"),
        },
        ..buy("lim-1", 200)
    };
    let placed = book.submit(&ctx(&bars[..1]), limit, Origin::Api).unwrap();
    // Day 5's low is 2490: the limit is touched, filled at the limit without slippage.
    book.sync(&ctx(&bars[..2]));
    let order = &book.orders[&placed.record.order.id];
    assert_eq!(order.order.status, OrderStatus::Filled);
    assert_eq!(order.fills[0].execution.price, px("2495"));
    let untouched = OrderRequest {
        kind: OrderKind::Limit {
            limit_price: px("2400"),
        },
        ..buy("lim-2", 100)
    };
    let placed = book
        .submit(&ctx(&bars[..2]), untouched, Origin::Api)
        .unwrap();
    book.sync(&ctx(&bars[..3]));
    assert_eq!(
        book.orders[&placed.record.order.id].order.status,
        OrderStatus::Expired,
        "a day order the market never reached expires with its session"
    );
}

#[test]
fn finished_orders_leave_the_book_and_their_ids_stay_idempotent() {
    let bars = week();
    let c = ctx(&bars[..1]);
    let ledger = ledger();
    let submit = |request: OrderRequest| {
        ledger
            .transact(|b| {
                b.submit_checked(&c, request.clone(), Origin::Api, |id| {
                    ledger.client_order(id).map_err(|e| e.to_string())
                })
            })
            .unwrap()
            .value
    };
    for i in 0..10 {
        let sell = OrderRequest {
            side: Side::Sell,
            ..buy(&format!("s-{i}"), 100)
        };
        assert!(submit(sell).is_err(), "nothing to sell");
    }
    let working = submit(buy("w", 100)).unwrap();
    let book = ledger.read().unwrap();
    let old: Vec<String> = book
        .archivable(3)
        .iter()
        .map(|r| r.order.id.clone())
        .collect();
    assert_eq!(old.len(), 7, "ten finished, three kept");
    assert_eq!(old[0], "ord-00000001", "oldest first");
    let book = ledger
        .transact(|b| {
            b.forget(&old);
            b.forget(std::slice::from_ref(&working.record.order.id));
        })
        .unwrap()
        .book;
    assert_eq!(book.orders.len(), 4, "three finished and the working one");
    assert_eq!(
        book.client_ids.len(),
        4,
        "the book keeps the client ids of its own orders only"
    );
    let again = OrderRequest {
        side: Side::Sell,
        ..buy("s-0", 100)
    };
    match submit(again) {
        Err(SubmitError::Archived { order_id, .. }) => assert_eq!(order_id, "ord-00000001"),
        other => panic!("expected the archived order, got {other:?}"),
    }
    // Without the ledger's keys, the book alone would take it for a new order.
    assert!(!ledger.read().unwrap().client_ids.contains_key("s-0"));
}

/// The whole equity curve is the ledger's: a point a market day, each the
/// day's last, read back from its months while the book keeps two.
#[test]
fn the_ledger_keeps_the_whole_equity_curve() {
    let bars = week();
    let ledger = ledger();
    for day in 1..=bars.len() {
        let c = ctx(&bars[..day]);
        ledger.transact(|b| b.sync(&c)).unwrap();
        if day == 1 {
            ledger
                .transact(|b| {
                    let _ = b.submit(&c, buy("e-1", 300), Origin::Api);
                })
                .unwrap();
        }
        // The same day again: its point is replaced, not added.
        ledger.transact(|b| b.sync(&c)).unwrap();
    }
    let book = ledger.read().unwrap();
    assert_eq!(book.equity_curve.len(), 2);
    let curve = ledger.equity_curve(&book).unwrap();
    let dates: Vec<NaiveDate> = curve.iter().map(|p| p.date).collect();
    assert_eq!(dates, [d(4), d(5), d(6), d(7)], "one point per market day");
    assert_eq!(curve.last(), book.equity_curve.last());
    assert!(
        curve[3].equity < curve[2].equity,
        "the stop-loss day lost: {curve:?}"
    );
    // Rebuilt from its events, the book is the same: the months are a projection.
    let events = ledger.events(0, usize::MAX).unwrap();
    let mut live = book.clone();
    live.journal.clear();
    assert!(Book::replay(events.iter().map(|(_, e)| e)) == live);
}

/// A transaction may start from a book loaded earlier (the component looks
/// at it to know what to fetch): if something was committed since, that
/// first attempt loses its race and the next one works on the new book.
#[test]
fn a_transaction_from_a_stale_load_starts_again_from_the_stored_book() {
    let bars = week();
    let c = ctx(&bars[..1]);
    let ledger = ledger();
    let fresh = ledger.load().unwrap();
    let committed = ledger
        .transact_from(fresh, |b| b.submit(&c, buy("f-1", 100), Origin::Api))
        .unwrap();
    assert_eq!(committed.attempts, 1, "nothing came between");
    let stale = ledger.load().unwrap();
    ledger
        .transact(|b| b.submit(&c, buy("f-2", 100), Origin::Api))
        .unwrap();
    let committed = ledger
        .transact_from(stale, |b| b.submit(&c, buy("f-3", 100), Origin::Api))
        .unwrap();
    assert_eq!(committed.attempts, 2, "the stale load lost its race");
    let book = ledger.read().unwrap();
    let ids: Vec<&str> = book
        .orders
        .values()
        .map(|r| r.order.client_order_id.as_str())
        .collect();
    assert_eq!(ids, ["f-1", "f-2", "f-3"], "nothing committed was lost");
}
