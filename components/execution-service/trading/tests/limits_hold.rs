//! Property: whatever sequence of orders arrives, the ones the risk engine
//! accepts never leave the account beyond a limit.

use std::collections::BTreeMap;

use market_data::Price;
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
            let equity = portfolio.equity(&marks);
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
                .apply(symbol, &Fill { side: s.side, quantity: intent.quantity, price, commission: Money::ZERO })
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
