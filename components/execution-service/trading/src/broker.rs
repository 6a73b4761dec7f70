//! Where orders go once the risk engine has approved them: an [`OrderGateway`].
//! [`PaperBroker`] is the one we have; a real broker's adapter implements the
//! same trait.
//!
//! The paper broker's model, in full:
//! - **When**: an order submitted while its market is in session (live clock)
//!   executes at once against the last price. Otherwise (outside the session,
//!   or on the replay clock, which stands after a day's close) it works from
//!   the next trading day's bar: market orders at that bar's open.
//! - **Price**: market and stop orders pay `slippage_bps` (a buy fills higher,
//!   a sell lower), rounded to a tick in the trader's disfavour. A limit order
//!   fills at its limit or better (the open, if the bar opens through it) and
//!   never pays slippage. A stop triggers when the bar trades through its stop
//!   price and fills at the stop, or at the open if the bar gaps through it.
//! - **Size**: at most `participation_bps` of the bar's volume per bar,
//!   rounded down to lots; what is left of a day order expires at the end of
//!   that bar's session, what is left of an IOC order is cancelled.
//! - **Cost**: commission `max(min_commission, notional × commission_bps)`.

use market_data::{Bar, Price, Rounding};
use serde::{Deserialize, Serialize};

use crate::book::price_decimals;
use crate::money::Money;
use crate::order::{Order, OrderKind, Side};

/// The paper broker's parameters (variables of execution-service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FillModel {
    pub slippage_bps: i64,
    pub commission_bps: i64,
    pub min_commission: Money,
    /// Largest share of a bar's volume one order may take, in bps.
    pub participation_bps: i64,
}

impl Default for FillModel {
    fn default() -> Self {
        Self {
            slippage_bps: 5,
            commission_bps: 2,
            min_commission: Money::ZERO,
            participation_bps: 1_000,
        }
    }
}

impl FillModel {
    pub fn validate(&self) -> Result<(), String> {
        if !(0..1_000).contains(&self.slippage_bps) || !(0..1_000).contains(&self.commission_bps) {
            return Err("slippage_bps and commission_bps are within 0..1000".into());
        }
        if self.min_commission.is_negative() {
            return Err("min_commission is not negative".into());
        }
        if !(1..=10_000).contains(&self.participation_bps) {
            return Err("participation_bps is within 1..=10000".into());
        }
        Ok(())
    }

    pub fn commission(&self, notional: Money) -> Money {
        notional.bps(self.commission_bps).max(self.min_commission)
    }

    /// `price` moved `slippage_bps` against the trader, rounded against
    /// them to the market's `decimals`.
    pub fn slipped(&self, side: Side, price: Price, decimals: u32) -> Price {
        let scaled =
            i128::from(price.ticks()) * i128::from(10_000 + side.sign() * self.slippage_bps);
        let (ticks, rounding) = match side {
            Side::Buy => ((scaled + 9_999) / 10_000, Rounding::Up),
            Side::Sell => (scaled / 10_000, Rounding::Down),
        };
        Price::from_ticks(i64::try_from(ticks).expect("price overflow")).rounded(decimals, rounding)
    }

    /// The most shares one order may take from `bar`, in whole lots.
    pub fn capacity(&self, bar: &Bar, lot_size: u64) -> u64 {
        let shares = u128::from(bar.volume) * self.participation_bps as u128 / 10_000;
        let shares = u64::try_from(shares).unwrap_or(u64::MAX);
        shares - shares % lot_size.max(1)
    }
}

/// A fill the gateway reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub quantity: u64,
    pub price: Price,
    pub commission: Money,
}

/// What a gateway did with an order at one point in market time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub executions: Vec<Execution>,
    /// What is left is finished: expired (day) or cancelled (IOC).
    pub done: bool,
}

/// A venue: accepts approved orders and reports their executions.
pub trait OrderGateway {
    /// The order was approved while the market is in session at `last`.
    fn execute_now(&self, order: &Order, last: &Bar, lot_size: u64) -> Report;

    /// A working order meets the next bar of its market.
    fn execute_on_bar(&self, order: &Order, bar: &Bar, lot_size: u64) -> Report;
}

/// Fills against bars with [`FillModel`].
#[derive(Debug, Clone, Default)]
pub struct PaperBroker {
    pub model: FillModel,
}

impl PaperBroker {
    fn fill(&self, price: Price, quantity: u64) -> Option<Execution> {
        (quantity > 0).then(|| {
            let notional = Money::notional(price, quantity).unwrap_or(Money::ZERO);
            Execution {
                quantity,
                price,
                commission: self.model.commission(notional),
            }
        })
    }

    /// The price this bar gives the order, if it trades at all.
    fn price_on_bar(&self, order: &Order, bar: &Bar) -> Option<Price> {
        let buy = order.side == Side::Buy;
        match order.kind {
            OrderKind::Market => Some(self.model.slipped(
                order.side,
                bar.open,
                price_decimals(&order.symbol),
            )),
            OrderKind::Limit { limit_price } => {
                if buy && bar.low <= limit_price {
                    Some(bar.open.min(limit_price))
                } else if !buy && bar.high >= limit_price {
                    Some(bar.open.max(limit_price))
                } else {
                    None
                }
            }
            OrderKind::Stop { stop_price } => {
                let trigger = if buy {
                    (bar.high >= stop_price).then(|| bar.open.max(stop_price))
                } else {
                    (bar.low <= stop_price).then(|| bar.open.min(stop_price))
                };
                trigger.map(|p| {
                    self.model
                        .slipped(order.side, p, price_decimals(&order.symbol))
                })
            }
        }
    }
}

impl OrderGateway for PaperBroker {
    fn execute_now(&self, order: &Order, last: &Bar, _lot_size: u64) -> Report {
        let price = match order.kind {
            OrderKind::Market => Some(self.model.slipped(
                order.side,
                last.close,
                price_decimals(&order.symbol),
            )),
            OrderKind::Limit { limit_price } => match order.side {
                Side::Buy => (last.close <= limit_price).then_some(last.close),
                Side::Sell => (last.close >= limit_price).then_some(last.close),
            },
            OrderKind::Stop { stop_price } => match order.side {
                Side::Buy => (last.close >= stop_price).then_some(last.close),
                Side::Sell => (last.close <= stop_price).then_some(last.close),
            }
            .map(|p| {
                self.model
                    .slipped(order.side, p, price_decimals(&order.symbol))
            }),
        };
        let executions = price
            .and_then(|p| self.fill(p, order.remaining()))
            .into_iter()
            .collect();
        Report {
            executions,
            done: order.time_in_force == crate::order::TimeInForce::Ioc,
        }
    }

    fn execute_on_bar(&self, order: &Order, bar: &Bar, lot_size: u64) -> Report {
        let executions = self
            .price_on_bar(order, bar)
            .and_then(|price| {
                let quantity = order.remaining().min(self.model.capacity(bar, lot_size));
                self.fill(price, quantity)
            })
            .into_iter()
            .collect();
        // Both time-in-force kinds end with the bar's session: a day order
        // expires, an IOC order had its one chance at the open.
        Report {
            executions,
            done: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::TimeInForce;
    use chrono::NaiveDate;

    fn px(s: &str) -> Price {
        s.parse().unwrap()
    }

    fn bar(open: &str, high: &str, low: &str, close: &str, volume: u64) -> Bar {
        Bar {
            date: NaiveDate::from_ymd_opt(2024, 3, 5).unwrap(),
            ts: 0,
            open: px(open),
            high: px(high),
            low: px(low),
            close: px(close),
            volume,
        }
    }

    fn order(side: Side, kind: OrderKind, quantity: u64) -> Order {
        let mut o = Order::new(
            "o".into(),
            "c".into(),
            "7203.T".into(),
            side,
            kind,
            TimeInForce::Day,
            quantity,
        );
        o.apply(&crate::order::OrderEvent::Accept).unwrap();
        o
    }

    fn broker() -> PaperBroker {
        PaperBroker {
            model: FillModel {
                slippage_bps: 10,
                commission_bps: 5,
                min_commission: Money::units(100),
                participation_bps: 1_000,
            },
        }
    }

    /// One row per rule of the model: the order, the bar, the fill expected (price, shares).
    #[test]
    fn fill_model_case_table() {
        let day = bar("2500", "2600", "2400", "2550", 100_000);
        let gap_up = bar("2700", "2750", "2650", "2720", 100_000);
        let thin = bar("2500", "2600", "2400", "2550", 2_550);
        let limit = |p| OrderKind::Limit { limit_price: px(p) };
        let stop = |p| OrderKind::Stop { stop_price: px(p) };
        // (name, order, bar, expected fill price and shares)
        type Case = (&'static str, Order, Bar, Option<(&'static str, u64)>);
        let cases: Vec<Case> = vec![
            (
                "market buy: open plus 10 bps",
                order(Side::Buy, OrderKind::Market, 300),
                day,
                Some(("2502.5", 300)),
            ),
            (
                "market sell: open minus 10 bps",
                order(Side::Sell, OrderKind::Market, 300),
                day,
                Some(("2497.5", 300)),
            ),
            (
                "limit buy below the low: no fill",
                order(Side::Buy, limit("2399"), 300),
                day,
                None,
            ),
            (
                "limit buy touched: at the limit, no slippage",
                order(Side::Buy, limit("2450"), 300),
                day,
                Some(("2450", 300)),
            ),
            (
                "limit buy opened through: at the better open",
                order(Side::Buy, limit("2800"), 300),
                gap_up,
                Some(("2700", 300)),
            ),
            (
                "limit sell touched",
                order(Side::Sell, limit("2580"), 300),
                day,
                Some(("2580", 300)),
            ),
            (
                "stop sell not reached",
                order(Side::Sell, stop("2300"), 300),
                day,
                None,
            ),
            (
                "stop sell triggered: stop minus slippage",
                order(Side::Sell, stop("2450"), 300),
                day,
                Some(("2447.55", 300)),
            ),
            (
                "stop buy gapped through: open plus slippage",
                order(Side::Buy, stop("2600"), 300),
                gap_up,
                Some(("2702.7", 300)),
            ),
            (
                "10% of 2,550 shares is 255: two lots",
                order(Side::Buy, OrderKind::Market, 300),
                thin,
                Some(("2502.5", 200)),
            ),
        ];
        for (name, order, bar, expected) in cases {
            let report = broker().execute_on_bar(&order, &bar, 100);
            let got = report
                .executions
                .first()
                .map(|e| (e.price.to_string(), e.quantity));
            let expected = expected.map(|(p, q)| (px(p).to_string(), q));
            assert_eq!(got, expected, "{name}");
            assert!(report.done, "{name}: the rest ends with the session");
        }
    }

    #[test]
    fn commission_has_a_minimum_and_slippage_rounds_against_the_trader() {
        let model = broker().model;
        assert_eq!(
            model.commission(Money::units(100_000)),
            Money::units(100),
            "5 bps of ¥100,000 is ¥50, under the minimum"
        );
        assert_eq!(model.commission(Money::units(1_000_000)), Money::units(500));
        let odd: Price = "1.2345".parse().unwrap();
        let at = |side, decimals| model.slipped(side, odd, decimals).to_string();
        assert_eq!(at(Side::Buy, 4), "1.2358", "1.2357345 up");
        assert_eq!(at(Side::Sell, 4), "1.2332", "1.2332655 down");
        // A currency pair's five decimals, a crypto-currency's eight.
        assert_eq!(at(Side::Buy, 5), "1.23574");
        assert_eq!(at(Side::Sell, 8), "1.2332655");
    }

    #[test]
    fn in_session_orders_execute_against_the_last_price() {
        let last = bar("2500", "2600", "2400", "2550", 100_000);
        let b = broker();
        let market = b.execute_now(&order(Side::Buy, OrderKind::Market, 300), &last, 100);
        assert_eq!(market.executions[0].price, px("2552.55"));
        assert!(!market.done, "a filled day order needs nothing more");
        let resting = b.execute_now(
            &order(
                Side::Buy,
                OrderKind::Limit {
                    limit_price: px("2500"),
                },
                300,
            ),
            &last,
            100,
        );
        assert!(resting.executions.is_empty() && !resting.done, "rests");
        let mut ioc = order(
            Side::Buy,
            OrderKind::Limit {
                limit_price: px("2500"),
            },
            300,
        );
        ioc.time_in_force = TimeInForce::Ioc;
        let report = b.execute_now(&ioc, &last, 100);
        assert!(
            report.executions.is_empty() && report.done,
            "IOC is cancelled"
        );
    }
}
