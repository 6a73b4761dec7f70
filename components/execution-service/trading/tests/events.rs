//! Property: the book is the fold of its events. Whatever happens to an
//! account — orders of every kind, fills and exits on new bars, cancels,
//! day changes, state changes, notices delivered, orders archived,
//! idempotent replays, also of archived orders — the book rebuilt from the
//! events the ledger stored equals the live book, the events are numbered
//! 1, 2, 3, ... without a gap, no stored event is ever written twice, and
//! no client order id is ever used by two orders.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Mutex;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use market_data::{Bar, Market, Price};
use proptest::prelude::*;
use trading::book::OrderRequest;
use trading::ledger::{CasStore, Ledger, MemoryStore, Snapshot};
use trading::{
    Book, Context, Currency, FxRates, MarketView, Money, OrderKind, Origin, PaperBroker,
    RiskLimits, SessionPolicy, Side, TimeInForce, TradingState,
};

const SYMBOL: &str = "7203.T";

/// A [`MemoryStore`] that watches the event blocks: each write of one may
/// only append to what it held.
#[derive(Default)]
struct Counted {
    inner: MemoryStore,
    event_writes: Mutex<HashMap<String, usize>>,
    rewrites: Mutex<Vec<String>>,
}

impl CasStore for Counted {
    type Token = <MemoryStore as CasStore>::Token;
    type Error = Infallible;

    fn load(&self, key: &str) -> Result<Snapshot<Self::Token>, Infallible> {
        self.inner.load(key)
    }

    fn swap(&self, token: Self::Token, value: Vec<u8>) -> Result<bool, Infallible> {
        let (key, before) = (token.0.clone(), token.1.clone().unwrap_or_default());
        let appended = value.starts_with(&before);
        let swapped = self.inner.swap(token, value)?;
        if swapped && key.contains("/events/") {
            *self
                .event_writes
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default() += 1;
            if !appended {
                self.rewrites.lock().unwrap().push(key);
            }
        }
        Ok(swapped)
    }
}

#[derive(Debug, Clone)]
enum Step {
    Buy {
        lots: u64,
        limit_bps: Option<i64>,
    },
    Sell {
        lots: u64,
    },
    /// A new trading day's bar, its close `move_bps` from the last one.
    NextBar {
        move_bps: i64,
    },
    Cancel {
        pick: usize,
    },
    State {
        to: usize,
    },
    Deliver {
        count: usize,
    },
    Archive,
    /// An earlier client order id again.
    Again {
        pick: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..30, prop::option::of(-300i64..300))
            .prop_map(|(lots, limit_bps)| Step::Buy { lots, limit_bps }),
        2 => (1u64..30).prop_map(|lots| Step::Sell { lots }),
        4 => (-600i64..600).prop_map(|move_bps| Step::NextBar { move_bps }),
        1 => any::<usize>().prop_map(|pick| Step::Cancel { pick }),
        1 => (0usize..3).prop_map(|to| Step::State { to }),
        1 => (0usize..4).prop_map(|count| Step::Deliver { count }),
        1 => Just(Step::Archive),
        1 => any::<usize>().prop_map(|pick| Step::Again { pick }),
    ]
}

fn bar(date: NaiveDate, open: i64, close: i64) -> Bar {
    Bar {
        date,
        ts: Market::Tse.session_open(date).timestamp(),
        open: Price::from_ticks(open),
        high: Price::from_ticks(open.max(close) * 1_005 / 1_000),
        low: Price::from_ticks(open.min(close) * 995 / 1_000),
        close: Price::from_ticks(close),
        volume: 2_000_000,
    }
}

fn next_weekday(date: NaiveDate) -> NaiveDate {
    Market::Tse.next_trading_day(date)
}

fn context(bars: &[Bar], step: usize, fx: &FxRates) -> Context {
    let date = bars.last().map(|b| b.date).expect("a bar");
    Context {
        fx: fx.clone(),
        limits: RiskLimits::default(),
        broker: PaperBroker::default(),
        session_policy: SessionPolicy::Queue,
        market: MarketView {
            now: Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap()
                + Duration::seconds(7 * step as i64),
            ..MarketView::replay(
                date,
                Market::Tse.close_of(date).unwrap(),
                BTreeMap::from([(SYMBOL.to_string(), bars.to_vec())]),
            )
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_book_rebuilt_from_its_events_is_the_live_book(
        steps in prop::collection::vec(step(), 1..70),
        dollars in any::<bool>(),
    ) {
        // A yen account, or a dollar one whose yen buys convert dollars.
        let (book, fx) = if dollars {
            (
                Book::open(Money::units(70_000), Currency::USD),
                FxRates::parse(Currency::USD, "USDJPY=150").unwrap(),
            )
        } else {
            (Book::new(Money::units(10_000_000)), FxRates::default())
        };
        let ledger = Ledger::new(Counted::default(), "acct", book);
        let first = NaiveDate::from_ymd_opt(2024, 3, 4).unwrap();
        let mut bars = vec![bar(first, 25_000_000, 25_000_000)];
        let mut requests: Vec<OrderRequest> = Vec::new();
        // As the component submits: client order ids of archived orders are
        // the ledger's.
        let archived = |id: &str| ledger.client_order(id).map_err(|e| e.to_string());
        // The account opens: its first event is stored.
        ledger.transact(|_| ()).unwrap();
        for (i, step) in steps.iter().enumerate() {
            let ctx = context(&bars, i, &fx);
            let last = bars.last().unwrap().close.ticks();
            let order = |side, lots: u64, kind| OrderRequest {
                client_order_id: format!("c-{i}"),
                symbol: SYMBOL.into(),
                side,
                kind,
                time_in_force: if i % 3 == 0 { TimeInForce::Ioc } else { TimeInForce::Day },
                quantity: Some(lots * 100),
                stop_loss: None,
                take_profit: None,
            };
            match step {
                Step::Buy { lots, limit_bps } => {
                    let kind = match limit_bps {
                        None => OrderKind::Market,
                        Some(bps) => OrderKind::Limit {
                            limit_price: Price::from_ticks(last + last * bps / 10_000),
                        },
                    };
                    let request = order(Side::Buy, *lots, kind);
                    requests.push(request.clone());
                    ledger.transact(|b| { let _ = b.submit_checked(&ctx, request.clone(), Origin::Api, archived); }).unwrap();
                }
                Step::Sell { lots } => {
                    let request = order(Side::Sell, *lots, OrderKind::Market);
                    requests.push(request.clone());
                    ledger.transact(|b| { let _ = b.submit_checked(&ctx, request.clone(), Origin::Cycle, archived); }).unwrap();
                }
                Step::NextBar { move_bps } => {
                    let date = next_weekday(bars.last().unwrap().date);
                    let close = (last + last * move_bps / 10_000).max(10_000);
                    bars.push(bar(date, last, close));
                    let ctx = context(&bars, i, &fx);
                    ledger.transact(|b| b.sync(&ctx)).unwrap();
                }
                Step::Cancel { pick } => {
                    ledger.transact(|b| {
                        let working: Vec<String> =
                            b.working_orders().map(|r| r.order.id.clone()).collect();
                        if !working.is_empty() {
                            let _ = b.cancel(&working[pick % working.len()]);
                        }
                    }).unwrap();
                }
                Step::State { to } => {
                    let to = [TradingState::Active, TradingState::Reducing, TradingState::Halted][*to];
                    ledger.transact(|b| { b.set_state(&ctx, to, format!("step {i}")); }).unwrap();
                }
                Step::Deliver { count } => {
                    ledger.transact(|b| {
                        let sequence: Vec<u64> = b.outbox.iter().take(*count).map(|(n, _)| *n).collect();
                        b.delivered(&sequence);
                    }).unwrap();
                }
                Step::Archive => {
                    ledger.transact(|b| {
                        let ids: Vec<String> =
                            b.archivable(0).into_iter().map(|r| r.order.id.clone()).collect();
                        b.forget(&ids);
                    }).unwrap();
                }
                Step::Again { pick } => {
                    if !requests.is_empty() {
                        let request = requests[pick % requests.len()].clone();
                        ledger.transact(|b| { let _ = b.submit_checked(&ctx, request.clone(), Origin::Api, archived); }).unwrap();
                    }
                }
            }
        }
        let events = ledger.events(0, usize::MAX).unwrap();
        let sequence: Vec<u64> = events.iter().map(|(n, _)| *n).collect();
        prop_assert_eq!(sequence, (1..=events.len() as u64).collect::<Vec<_>>());
        let mut live = ledger.read().unwrap();
        prop_assert_eq!(live.events, events.len() as u64);
        live.journal.clear();
        let rebuilt = Book::replay(events.iter().map(|(_, e)| e));
        prop_assert_eq!(&rebuilt, &live);
        // On the dollar account every filled buy converted dollars to yen.
        let bought = events.iter().any(|(_, e)| matches!(
            e,
            trading::Event::OrderFilled { fill, .. } if fill.conversion.is_some()
        ));
        let buy_filled = live.orders.values().any(|r| r.order.side == Side::Buy && !r.fills.is_empty());
        if dollars && buy_filled {
            prop_assert!(bought, "a yen buy on a dollar account converts");
        }
        if !dollars {
            prop_assert!(!bought, "a yen buy on a yen account converts nothing");
        }
        // The whole equity curve the ledger keeps is each day's last point.
        let mut days = BTreeMap::new();
        for (_, event) in &events {
            if let trading::Event::EquityRecorded { point } = event {
                days.insert(point.date, *point);
            }
        }
        let curve = ledger.equity_curve(&ledger.read().unwrap()).unwrap();
        prop_assert_eq!(curve, days.into_values().collect::<Vec<_>>());
        // Each order's history lists its own events.
        for record in live.orders.values() {
            prop_assert!(!record.events.is_empty());
            for sequence in &record.events {
                let id = match &events[*sequence as usize - 1].1 {
                    trading::Event::OrderPlaced { record } => record.order.id.clone(),
                    trading::Event::OrderFilled { order_id, .. }
                    | trading::Event::OrderTriggered { order_id, .. }
                    | trading::Event::OrderClosed { order_id, .. } => order_id.clone(),
                    other => panic!("event {sequence} is not an order's: {other:?}"),
                };
                prop_assert_eq!(&id, &record.order.id);
            }
        }
        let mut client_ids: Vec<&str> = events
            .iter()
            .filter_map(|(_, e)| match e {
                trading::Event::OrderPlaced { record } => Some(record.order.client_order_id.as_str()),
                _ => None,
            })
            .collect();
        let placed = client_ids.len();
        client_ids.sort_unstable();
        client_ids.dedup();
        prop_assert_eq!(client_ids.len(), placed, "a client order id placed twice");
        let rewrites = ledger.store().rewrites.lock().unwrap();
        prop_assert!(rewrites.is_empty(), "event blocks rewritten: {:?}", rewrites);
        // Every event is in a block, right after its transaction committed:
        // one block per 64 events.
        let blocks = ledger.store().event_writes.lock().unwrap().len() as u64;
        prop_assert_eq!(blocks, (events.len() as u64).div_ceil(trading::ledger::EVENT_BLOCK));
    }
}
