//! Property: whatever sequence of orders arrives, the ones the risk engine
//! accepts never leave the account beyond a limit.

use std::collections::BTreeMap;

use market_data::{Market, Price};
use proptest::prelude::*;
use trading::risk::{self, Exposure, Intent, RiskLimits, TradingState};
use trading::{Fill, Money, Portfolio, Side};

const SYMBOLS: [&str; 12] = [
    "1301.T", "6758.T", "7203.T", "8306.T", "9984.T", "6861.T", "4063.T", "8035.T", "9432.T",
    "6098.T", "4502.T", "7974.T",
];

#[derive(Debug, Clone)]
struct Step {
    symbol: usize,
    side: Side,
    lots: u64,
    /// Yen; every step also moves the symbol's mark to this price.
    price: i64,
}

fn step() -> impl Strategy<Value = Step> {
    (0..SYMBOLS.len(), any::<bool>(), 0u64..12, 500i64..6_000).prop_map(
        |(symbol, buy, lots, price)| Step {
            symbol,
            side: if buy { Side::Buy } else { Side::Sell },
            lots,
            price,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn accepted_orders_never_breach_a_limit(steps in prop::collection::vec(step(), 1..120)) {
        let limits = RiskLimits::default();
        let start = Money::units(5_000_000);
        let mut portfolio = Portfolio::new(start);
        let mut marks: BTreeMap<String, Price> = BTreeMap::new();
        let mut peak = start;
        for s in steps {
            let symbol = SYMBOLS[s.symbol];
            let price = Price::from_ticks(s.price * Price::SCALE);
            marks.insert(symbol.to_string(), price);
            let equity = portfolio.equity(&marks, &trading::FxRates::default());
            peak = peak.max(equity);
            let held = portfolio.quantity(symbol);
            let exposure = Exposure {
                state: TradingState::Active,
                position: held as i64,
                open_positions: portfolio.open_positions(),
                cash: portfolio.cash,
                daily_pnl: equity - start,
                equity,
                peak_equity: peak,
                orders_last_minute: 0,
            };
            let intent = Intent { side: s.side, quantity: s.lots * 100, price, lot_size: 100 };
            if risk::check(&limits, &intent, &exposure).is_err() {
                continue;
            }
            portfolio
                .apply(symbol, &Fill { side: s.side, quantity: intent.quantity, price, commission: Money::ZERO, currency: trading::Currency::JPY, rate: Price::from_ticks(Price::SCALE), conversion: None })
                .expect("an accepted order fills");
            let after = portfolio.quantity(symbol);
            let grew = after > held;
            // Position value at the fill price, open positions, cash: within limits.
            let value = Money::notional(price, after).unwrap();
            prop_assert!(!grew || value <= limits.max_position_value, "{symbol}: {value}");
            prop_assert!(portfolio.open_positions() <= limits.max_open_positions);
            prop_assert!(!portfolio.cash.is_negative(), "cash {}", portfolio.cash);
            // Once the daily loss or drawdown limit is reached, nothing adds exposure.
            let lossy = exposure.daily_pnl <= -limits.max_daily_loss
                || risk::drawdown_bps(equity, peak) >= limits.max_drawdown_bps;
            prop_assert!(!(lossy && grew), "{symbol} grew past a loss limit");
        }
    }
}

mod book {
    //! The same property over the whole book: orders queue, reserve, fill on
    //! the next bars (with slippage and commissions), exits fire; after every
    //! step nothing accepted has taken the account beyond a limit.

    use super::*;
    use chrono::{Duration, NaiveDate, TimeZone, Utc};
    use market_data::Bar;
    use trading::book::{Context, MarketView, OrderRequest, Origin, SessionPolicy};
    use trading::{Book, FxRates, OrderKind, PaperBroker, TimeInForce};

    #[derive(Debug, Clone)]
    struct Day {
        orders: Vec<(usize, bool, u64)>,
        /// Per symbol, the day's move in bps of the previous close.
        moves: Vec<i64>,
    }

    fn day() -> impl Strategy<Value = Day> {
        (
            prop::collection::vec((0..5usize, any::<bool>(), 1u64..6), 0..6),
            prop::collection::vec(-800i64..800, 5),
        )
            .prop_map(|(orders, moves)| Day { orders, moves })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn the_book_never_breaches_a_limit(days in prop::collection::vec(day(), 1..25)) {
            let limits = RiskLimits::default();
            let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
            let mut closes: Vec<i64> = vec![2_500, 1_800, 3_100, 900, 4_200]
                .into_iter()
                .map(|y| y * Price::SCALE)
                .collect();
            let mut bars: BTreeMap<String, Vec<Bar>> = BTreeMap::new();
            let mut book = Book::new(Money::units(5_000_000));
            let mut date = start;
            for (n, d) in days.iter().enumerate() {
                date = Market::Tse.next_trading_day(date);
                for (i, symbol) in SYMBOLS[..5].iter().enumerate() {
                    let open = closes[i];
                    let close = (open + open * d.moves[i] / 10_000).max(Price::SCALE);
                    closes[i] = close;
                    bars.entry(symbol.to_string()).or_default().push(Bar {
                        date,
                        ts: Market::Tse.session_open(date).timestamp(),
                        open: Price::from_ticks(open),
                        high: Price::from_ticks(open.max(close) + open / 200),
                        low: Price::from_ticks(open.min(close) - open / 200),
                        close: Price::from_ticks(close),
                        volume: 10_000_000,
                    });
                }
                let ctx = Context {
                    fx: FxRates::default(),
                    limits: limits.clone(),
                    broker: PaperBroker::default(),
                    session_policy: SessionPolicy::Queue,
                    market: MarketView {
                        now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                            + Duration::minutes(n as i64 * 10),
                        ..MarketView::replay(date, Market::Tse.close_of(date).unwrap(), bars.clone())
                    },
                };
                book.sync(&ctx);
                for (k, (i, buy, lots)) in d.orders.iter().enumerate() {
                    let request = OrderRequest {
                        client_order_id: format!("p-{n}-{k}"),
                        symbol: SYMBOLS[*i].to_string(),
                        side: if *buy { Side::Buy } else { Side::Sell },
                        kind: OrderKind::Market,
                        time_in_force: TimeInForce::Day,
                        quantity: Some(lots * 100),
                        stop_loss: None,
                        take_profit: None,
                    };
                    let symbol = request.symbol.clone();
                    book.sync(&ctx);
                    let before = book.exposure(&ctx, &symbol);
                    let accepted = book.submit(&ctx, request, Origin::Api);
                    // An accepted buy: the symbol's reserved exposure (position
                    // plus working orders) at the price it was checked at is
                    // within the position limit.
                    if let Ok(placed) = &accepted
                        && placed.record.order.side == Side::Buy
                    {
                        let exposure = book.exposure(&ctx, &symbol);
                        let value = Money::notional(placed.record.reference_price, exposure.position as u64).unwrap();
                        prop_assert!(value <= limits.max_position_value, "{symbol}: {value}");
                        // And no loss limit had been reached.
                        prop_assert!(before.daily_pnl > -limits.max_daily_loss);
                        prop_assert!(
                            risk::drawdown_bps(before.equity, before.peak_equity) < limits.max_drawdown_bps
                        );
                        prop_assert_eq!(before.state, TradingState::Active);
                    }
                    for symbol in &SYMBOLS[..5] {
                        let exposure = book.exposure(&ctx, symbol);
                        prop_assert!(exposure.position >= 0, "{symbol}: short");
                        prop_assert!(exposure.open_positions <= limits.max_open_positions);
                        prop_assert!(!exposure.cash.is_negative(), "reserved beyond the cash");
                    }
                    prop_assert!(!book.portfolio.cash.is_negative(), "cash {}", book.portfolio.cash);
                }
            }
        }
    }
}
