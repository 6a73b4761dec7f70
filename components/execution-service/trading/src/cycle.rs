//! The trading cycle's decisions: from model signals to orders.
//!
//! Buy signals open positions (most confident first, at most `max_orders`
//! new ones, never a symbol already held or being bought), sized by the risk
//! engine's rule; sell signals close what is held. Client order ids are
//! `cycle-<decision>-<symbol>-<side>` (the decision: the market date on
//! daily bars, the bar's instant on intraday ones), so running the cycle
//! twice on one bar places each order once.

use chrono::{DateTime, NaiveDate, Utc};
use market_data::Interval;
use serde::{Deserialize, Serialize};

use crate::book::{Book, OrderRequest};
use crate::order::{OrderKind, Side, TimeInForce};

pub use daytrade_contract::Action;

/// One symbol's forecast, as ml-service gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub symbol: String,
    pub action: Action,
    pub confidence: f64,
    pub probability_up: f64,
}

/// What the caller may tune per cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CycleRequest {
    /// Symbols to take from symbol-service's recommendations.
    pub universe: usize,
    /// Ignore signals less confident than this (0..=1).
    pub min_confidence: f64,
    /// New positions opened per cycle at most.
    pub max_orders: usize,
    /// Trade these symbols instead of symbol-service's recommendations
    /// (an intraday cycle on a currency pair, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbols: Option<Vec<String>>,
}

impl Default for CycleRequest {
    fn default() -> Self {
        Self {
            universe: 10,
            min_confidence: 0.0,
            max_orders: 5,
            symbols: None,
        }
    }
}

impl CycleRequest {
    /// The request's values are in range, or the field that is not and why.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if !(1..=100).contains(&self.universe) {
            return Err(("universe", "`universe` is 1 to 100 symbols"));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(("min_confidence", "`min_confidence` is within 0..=1"));
        }
        if self.max_orders > 50 {
            return Err(("max_orders", "`max_orders` is at most 50"));
        }
        if let Some(symbols) = &self.symbols {
            let canonical =
                |s: &String| market_data::Symbol::parse(s).is_ok_and(|p| p.as_str() == s.as_str());
            if symbols.is_empty() || symbols.len() > 100 || !symbols.iter().all(canonical) {
                return Err((
                    "symbols",
                    "`symbols` is 1 to 100 symbols, each written canonically",
                ));
            }
        }
        Ok(())
    }
}

/// The label of a cycle's decision in its client order ids: the market
/// date on daily bars (`2010-08-20`), the instant on intraday ones
/// (`20170306T1500Z`): one cycle per bar.
pub fn decision_label(at: DateTime<Utc>, as_of: NaiveDate, interval: Interval) -> String {
    if interval.is_intraday() {
        at.format("%Y%m%dT%H%MZ").to_string()
    } else {
        as_of.to_string()
    }
}

/// The orders a cycle places for `signals` at the decision `label`s.
pub fn plan(
    book: &Book,
    signals: &[Signal],
    label: &str,
    request: &CycleRequest,
) -> Vec<OrderRequest> {
    let order = |symbol: &str, side: Side, quantity: Option<u64>| OrderRequest {
        client_order_id: format!(
            "cycle-{label}-{symbol}-{}",
            match side {
                Side::Buy => "buy",
                Side::Sell => "sell",
            }
        ),
        symbol: symbol.to_string(),
        side,
        kind: OrderKind::Market,
        time_in_force: TimeInForce::Day,
        quantity,
        stop_loss: None,
        take_profit: None,
    };
    let busy = |symbol: &str| {
        book.portfolio.quantity(symbol) > 0
            || book.working_orders().any(|r| r.order.symbol == symbol)
    };
    let mut confident: Vec<&Signal> = signals
        .iter()
        .filter(|s| s.confidence.is_finite() && s.confidence >= request.min_confidence)
        .collect();
    confident.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut orders: Vec<OrderRequest> = confident
        .iter()
        .filter(|s| s.action == Action::Sell)
        .filter_map(|s| {
            let held = book.portfolio.quantity(&s.symbol);
            let selling: u64 = book
                .working_orders()
                .filter(|r| r.order.symbol == s.symbol && r.order.side == Side::Sell)
                .map(|r| r.order.remaining())
                .sum();
            let free = held.saturating_sub(selling);
            (free > 0).then(|| order(&s.symbol, Side::Sell, Some(free)))
        })
        .collect();
    orders.extend(
        confident
            .iter()
            .filter(|s| s.action == Action::Buy && !busy(&s.symbol))
            .take(request.max_orders)
            .map(|s| order(&s.symbol, Side::Buy, None)),
    );
    orders
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fx::{Conversion, Currency};
    use crate::money::Money;
    use crate::portfolio::Fill;

    fn signal(symbol: &str, action: Action, confidence: f64) -> Signal {
        Signal {
            symbol: symbol.into(),
            action,
            confidence,
            probability_up: 0.5 + confidence / 2.0,
        }
    }

    #[test]
    fn a_decision_is_a_day_on_daily_bars_and_a_bar_on_intraday_ones() {
        let at: DateTime<Utc> = "2017-03-06T15:00:00Z".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2017, 3, 6).unwrap();
        assert_eq!(decision_label(at, day, Interval::OneDay), "2017-03-06");
        assert_eq!(decision_label(at, day, Interval::OneHour), "20170306T1500Z");
    }

    #[test]
    fn buys_the_most_confident_new_names_and_sells_what_is_held() {
        let mut book = Book::new(Money::units(10_000_000));
        book.portfolio
            .apply(
                "MSFT",
                &Fill {
                    side: Side::Buy,
                    quantity: 40,
                    price: "25".parse().unwrap(),
                    commission: Money::ZERO,
                    currency: Currency::USD,
                    rate: "110".parse().unwrap(),
                    conversion: Conversion::buying(
                        Currency::USD,
                        Money::units(1_000),
                        "110".parse().unwrap(),
                    ),
                },
            )
            .unwrap();
        let signals = vec![
            signal("AAPL", Action::Buy, 0.10),
            signal("IBM", Action::Buy, 0.30),
            signal("MSFT", Action::Buy, 0.50),
            signal("KO", Action::Buy, 0.02),
            signal("MSFT", Action::Sell, 0.20),
            signal("XOM", Action::Sell, 0.40),
            signal("PG", Action::Hold, 0.00),
            signal("GE", Action::Buy, f64::NAN),
        ];
        let day = NaiveDate::from_ymd_opt(2010, 8, 20).unwrap();
        let request = CycleRequest {
            min_confidence: 0.05,
            max_orders: 2,
            ..CycleRequest::default()
        };
        let label = decision_label(DateTime::UNIX_EPOCH, day, Interval::OneDay);
        let orders = plan(&book, &signals, &label, &request);
        let got: Vec<(&str, Side, Option<u64>, &str)> = orders
            .iter()
            .map(|o| {
                (
                    o.symbol.as_str(),
                    o.side,
                    o.quantity,
                    o.client_order_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("MSFT", Side::Sell, Some(40), "cycle-2010-08-20-MSFT-sell"),
                ("IBM", Side::Buy, None, "cycle-2010-08-20-IBM-buy"),
                ("AAPL", Side::Buy, None, "cycle-2010-08-20-AAPL-buy"),
            ],
            "XOM is not held; MSFT is held so not bought; KO under the bar; GE not a number"
        );
    }

    #[test]
    fn requests_are_validated() {
        assert!(CycleRequest::default().validate().is_ok());
        for (bad, field) in [
            (
                CycleRequest {
                    universe: 0,
                    ..CycleRequest::default()
                },
                "universe",
            ),
            (
                CycleRequest {
                    min_confidence: 1.5,
                    ..CycleRequest::default()
                },
                "min_confidence",
            ),
            (
                CycleRequest {
                    max_orders: 51,
                    ..CycleRequest::default()
                },
                "max_orders",
            ),
        ] {
            assert_eq!(bad.validate().map_err(|e| e.0), Err(field), "{bad:?}");
        }
    }
}
