//! Where orders go once the risk engine has approved them: an [`OrderGateway`].
//! [`PaperBroker`] is the one we have; a real broker's adapter implements the
//! same trait.
//!
//! The paper broker's model, in full:
//! - **When**: an order never trades on a bar that opened before it was
//!   decided (its `works_from`, the market clock's instant): it waits for
//!   the next bar, on the live clock as on the replay clock (a fill at the
//!   last bar's close would use a price from before the decision). An
//!   `at-open` order trades only on the bar opening its trading day (the
//!   opening auction), an `at-close` order only at the close of the day's
//!   last bar (the closing auction), which may have opened before it was
//!   decided.
//! - **Price**: market and stop orders pay `slippage_bps` (a buy fills higher,
//!   a sell lower), rounded to a tick in the trader's disfavour. A limit order
//!   fills at its limit or better (the open, if the bar opens through it) and
//!   never pays slippage. A stop triggers when the bar trades through its stop
//!   price and fills at the stop, or at the open if the bar gaps through it.
//!   A stop-limit triggers like a stop and then fills as a limit at the
//!   trigger price if that is within its limit (a bar gapping past the
//!   limit leaves it working as a limit order). A trailing stop triggers
//!   like a stop at its level, checked before the bar moves it (the
//!   cautious reading: the bar's low may have come before its high).
//!   Auction orders fill at the bar's open or close (market: with slippage).
//! - **Size**: at most `participation_bps` of the bar's volume per bar,
//!   rounded down to lots; what is left of a day order expires at the end of
//!   its trading day, what is left of an IOC or auction order is cancelled
//!   after its one bar.
//! - **Cost**: commission `max(min_commission, notional × commission_bps)`.

use chrono::{DateTime, Utc};
use market_data::{Bar, BarTimes, Interval, Market, Price, Rounding};
use serde::{Deserialize, Serialize};

use crate::book::price_decimals;
use crate::money::Money;
use crate::order::{Order, OrderKind, Side, TimeInForce};

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

    /// The most units one order may take from `bar` (its volume in shares
    /// or coins, in units of `contract`), in whole lots.
    pub fn capacity(&self, bar: &Bar, lot_size: u64, contract: Price) -> u64 {
        let units = u128::from(bar.volume) * Price::SCALE as u128 / contract.ticks().max(1) as u128;
        let shares = units * self.participation_bps as u128 / 10_000;
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

/// A bar as orders meet it: its times and its place in the trading day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketBar {
    pub bar: Bar,
    pub opens_at: DateTime<Utc>,
    pub times: BarTimes,
}

impl MarketBar {
    pub fn new(market: Market, interval: Interval, bar: Bar) -> Self {
        let opens_at = DateTime::from_timestamp(bar.ts, 0).unwrap_or_default();
        Self {
            bar,
            opens_at,
            times: market.bar_times(opens_at, interval),
        }
    }

    pub fn closes_at(&self) -> DateTime<Utc> {
        self.times.close
    }

    /// When an order of `time_in_force` meets this bar: in the closing
    /// auction (at-close) at its close, otherwise at its open.
    pub fn meets_at(&self, time_in_force: TimeInForce) -> DateTime<Utc> {
        match time_in_force {
            TimeInForce::AtClose => self.closes_at(),
            _ => self.opens_at,
        }
    }
}

/// What a gateway did with an order on one bar.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub executions: Vec<Execution>,
    /// What is left is finished: expired (day) or cancelled (IOC, auction).
    pub done: bool,
    /// A stop-limit's stop was reached on this bar.
    pub triggered: bool,
    /// A trailing stop's new level after this bar.
    pub trail_stop: Option<Price>,
}

/// A venue: accepts approved orders and reports their executions.
pub trait OrderGateway {
    /// A working order meets a bar of its market it may trade on.
    fn execute_on_bar(&self, order: &Order, bar: &MarketBar, lot_size: u64) -> Report;
}

/// Fills against bars with [`FillModel`].
#[derive(Debug, Clone, Default)]
pub struct PaperBroker {
    pub model: FillModel,
}

/// Does a bar trade through `stop` in the order's direction? At what price.
fn stop_hit(side: Side, stop: Price, bar: &Bar) -> Option<Price> {
    match side {
        Side::Buy => (bar.high >= stop).then(|| bar.open.max(stop)),
        Side::Sell => (bar.low <= stop).then(|| bar.open.min(stop)),
    }
}

/// A limit order's price on a bar: its limit or the better open.
fn limit_fill(side: Side, limit: Price, bar: &Bar) -> Option<Price> {
    match side {
        Side::Buy => (bar.low <= limit).then(|| bar.open.min(limit)),
        Side::Sell => (bar.high >= limit).then(|| bar.open.max(limit)),
    }
}

/// Is `price` within a limit for `side`?
fn within(side: Side, price: Price, limit: Price) -> bool {
    match side {
        Side::Buy => price <= limit,
        Side::Sell => price >= limit,
    }
}

impl PaperBroker {
    fn fill(&self, symbol: &str, price: Price, quantity: u64) -> Option<Execution> {
        (quantity > 0).then(|| {
            let notional = crate::book::notional(symbol, price, quantity).unwrap_or(Money::ZERO);
            Execution {
                quantity,
                price,
                commission: self.model.commission(notional),
            }
        })
    }

    fn slipped(&self, order: &Order, price: Price) -> Price {
        self.model
            .slipped(order.side, price, price_decimals(&order.symbol))
    }

    /// An auction's price for the order: market with slippage, limit if
    /// the auction price is within it.
    fn auction(&self, order: &Order, price: Price) -> Option<Price> {
        match order.kind {
            OrderKind::Limit { limit_price } => {
                within(order.side, price, limit_price).then_some(price)
            }
            _ => Some(self.slipped(order, price)),
        }
    }

    /// The price this bar gives a continuous order, if it trades at all,
    /// and what the bar did to its trigger.
    fn continuous(&self, order: &Order, bar: &Bar, report: &mut Report) -> Option<Price> {
        let side = order.side;
        match order.kind {
            OrderKind::Market => Some(self.slipped(order, bar.open)),
            OrderKind::Limit { limit_price } => limit_fill(side, limit_price, bar),
            OrderKind::Stop { stop_price } => {
                stop_hit(side, stop_price, bar).map(|p| self.slipped(order, p))
            }
            OrderKind::StopLimit {
                stop_price,
                limit_price,
            } => {
                if order.triggered {
                    return limit_fill(side, limit_price, bar);
                }
                let trigger = stop_hit(side, stop_price, bar)?;
                report.triggered = true;
                within(side, trigger, limit_price).then_some(trigger)
            }
            OrderKind::TrailingStop { .. } => {
                let level = order.trail_stop?;
                if let Some(p) = stop_hit(side, level, bar) {
                    return Some(self.slipped(order, p));
                }
                let decimals = price_decimals(&order.symbol);
                let extreme = match side {
                    Side::Sell => bar.high,
                    Side::Buy => bar.low,
                };
                report.trail_stop = order
                    .kind
                    .trailed(side, extreme, decimals)
                    .map(|moved| match side {
                        Side::Sell => moved.max(level),
                        Side::Buy => moved.min(level),
                    })
                    .filter(|moved| *moved != level);
                None
            }
        }
    }
}

impl OrderGateway for PaperBroker {
    fn execute_on_bar(&self, order: &Order, bar: &MarketBar, lot_size: u64) -> Report {
        let mut report = Report::default();
        let price = match order.time_in_force {
            TimeInForce::AtOpen if !bar.times.opens_day => return report,
            TimeInForce::AtClose if !bar.times.ends_day => return report,
            TimeInForce::AtOpen => self.auction(order, bar.bar.open),
            TimeInForce::AtClose => self.auction(order, bar.bar.close),
            TimeInForce::Day | TimeInForce::Ioc => self.continuous(order, &bar.bar, &mut report),
        };
        report.executions = price
            .and_then(|price| {
                let contract = crate::book::contract_size(&order.symbol);
                let quantity = order
                    .remaining()
                    .min(self.model.capacity(&bar.bar, lot_size, contract));
                self.fill(&order.symbol, price, quantity)
            })
            .into_iter()
            .collect();
        // A day order lasts its trading day; the others have one chance.
        report.done = match order.time_in_force {
            TimeInForce::Day => bar.times.ends_day,
            _ => true,
        };
        report
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
        let date = NaiveDate::from_ymd_opt(2024, 3, 5).unwrap();
        Bar {
            date,
            ts: Market::Tse.session_open(date).timestamp(),
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
        let stop_limit = |s, l| OrderKind::StopLimit {
            stop_price: px(s),
            limit_price: px(l),
        };
        let trailing = |side, level| {
            let mut o = order(side, trail(), 300);
            o.trail_stop = Some(px(level));
            o
        };
        let auction = |side, kind, tif| {
            let mut o = order(side, kind, 300);
            o.time_in_force = tif;
            o
        };
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
                "stop-limit buy triggered within its limit: at the stop",
                order(Side::Buy, stop_limit("2550", "2560"), 300),
                day,
                Some(("2550", 300)),
            ),
            (
                "stop-limit buy gapped past its limit: triggered, no fill",
                order(Side::Buy, stop_limit("2600", "2650"), 300),
                gap_up,
                None,
            ),
            (
                "stop-limit sell not reached",
                order(Side::Sell, stop_limit("2300", "2290"), 300),
                day,
                None,
            ),
            (
                "trailing sell at 2450 hit: the level minus slippage",
                trailing(Side::Sell, "2450"),
                day,
                Some(("2447.55", 300)),
            ),
            (
                "trailing sell at 2380 not hit",
                trailing(Side::Sell, "2380"),
                day,
                None,
            ),
            (
                "market on open: the open plus slippage",
                auction(Side::Buy, OrderKind::Market, TimeInForce::AtOpen),
                day,
                Some(("2502.5", 300)),
            ),
            (
                "market on close: the close minus slippage",
                auction(Side::Sell, OrderKind::Market, TimeInForce::AtClose),
                day,
                Some(("2547.45", 300)),
            ),
            (
                "limit on close above the close: no fill",
                auction(Side::Sell, limit("2560"), TimeInForce::AtClose),
                day,
                None,
            ),
            (
                "limit on open at or above the open: the open",
                auction(Side::Buy, limit("2500"), TimeInForce::AtOpen),
                day,
                Some(("2500", 300)),
            ),
            (
                "10% of 2,550 shares is 255: two lots",
                order(Side::Buy, OrderKind::Market, 300),
                thin,
                Some(("2502.5", 200)),
            ),
        ];
        for (name, order, bar, expected) in cases {
            let report = broker().execute_on_bar(&order, &daily(bar), 100);
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

    fn trail() -> OrderKind {
        OrderKind::TrailingStop {
            trail_amount: Some(px("50")),
            trail_bps: None,
        }
    }

    fn daily(bar: Bar) -> MarketBar {
        MarketBar::new(Market::Tse, Interval::OneDay, bar)
    }

    /// Hourly bars of 2024-03-05 on the TSE (09:00 ... 14:00, the last one
    /// ends the day at 15:00 under the old close).
    fn hourly(hour_jst: u32, bar: Bar) -> MarketBar {
        let date = NaiveDate::from_ymd_opt(2024, 3, 5).unwrap();
        let ts = Market::Tse.session_open(date) + chrono::Duration::hours(i64::from(hour_jst) - 9);
        MarketBar::new(
            Market::Tse,
            Interval::OneHour,
            Bar {
                ts: ts.timestamp(),
                ..bar
            },
        )
    }

    /// Which bars an order's time in force lets it trade on, and when what
    /// is left of it is finished.
    #[test]
    fn time_in_force_case_table() {
        let b = broker();
        let quiet = bar("2500", "2510", "2490", "2505", 100_000);
        let limit = OrderKind::Limit {
            limit_price: px("2400"),
        };
        // (time in force, bar's hour JST, fills?, done?)
        let cases = [
            (TimeInForce::Day, 9, false, false),
            (TimeInForce::Day, 14, false, true),
            (TimeInForce::Ioc, 10, false, true),
            (TimeInForce::AtOpen, 9, false, true),
            (TimeInForce::AtOpen, 10, false, false),
            (TimeInForce::AtClose, 13, false, false),
            (TimeInForce::AtClose, 14, false, true),
        ];
        for (tif, hour, fills, done) in cases {
            let mut o = order(Side::Buy, limit, 300);
            o.time_in_force = tif;
            let report = b.execute_on_bar(&o, &hourly(hour, quiet), 100);
            assert_eq!(
                (!report.executions.is_empty(), report.done),
                (fills, done),
                "{tif:?} on the {hour}:00 bar"
            );
        }
        let mut moc = order(Side::Sell, OrderKind::Market, 300);
        moc.time_in_force = TimeInForce::AtClose;
        let fill = b.execute_on_bar(&moc, &hourly(14, quiet), 100).executions[0];
        assert_eq!(fill.price, px("2502.4950").rounded(4, Rounding::Down));
    }

    #[test]
    fn a_trailing_stop_follows_the_high_and_a_stop_limit_remembers_its_trigger() {
        let b = broker();
        let mut o = order(Side::Sell, trail(), 300);
        o.trail_stop = Some(px("2450"));
        let up = b.execute_on_bar(
            &o,
            &daily(bar("2500", "2600", "2490", "2590", 100_000)),
            100,
        );
        assert!(up.executions.is_empty());
        assert_eq!(up.trail_stop, Some(px("2550")), "50 below the high of 2600");
        o.trail_stop = up.trail_stop;
        let down = b.execute_on_bar(
            &o,
            &daily(bar("2580", "2585", "2500", "2510", 100_000)),
            100,
        );
        assert_eq!(down.trail_stop, None, "a level never moves down");
        assert_eq!(down.executions[0].price, px("2547.45"), "2550 minus 10 bps");
        let bps = OrderKind::TrailingStop {
            trail_amount: None,
            trail_bps: Some(100),
        };
        assert_eq!(bps.trailed(Side::Sell, px("2600"), 4), Some(px("2574")));
        assert_eq!(bps.trailed(Side::Buy, px("2600"), 4), Some(px("2626")));

        let mut sl = order(
            Side::Buy,
            OrderKind::StopLimit {
                stop_price: px("2600"),
                limit_price: px("2650"),
            },
            300,
        );
        let gap = b.execute_on_bar(
            &sl,
            &daily(bar("2700", "2750", "2640", "2720", 100_000)),
            100,
        );
        assert!(gap.triggered && gap.executions.is_empty());
        sl.triggered = true;
        let back = b.execute_on_bar(
            &sl,
            &daily(bar("2660", "2670", "2630", "2640", 100_000)),
            100,
        );
        assert_eq!(back.executions[0].price, px("2650"), "a limit order now");
    }
}
