//! Orders and their one state machine.
//!
//! ```text
//! new ──accept──▶ accepted ──fill (part)──▶ partially filled ──fill (rest)──▶ filled
//!  │                 │  └──────────fill (all)─────────────────────────────────▲
//!  └─reject─▶ rejected  ├─cancel─▶ cancelled ◀─cancel─ partially filled
//!                       └─expire─▶ expired   ◀─expire─ partially filled
//! ```
//! Filled, cancelled, rejected and expired are terminal; anything else is an
//! [`OrderError::InvalidTransition`].

use market_data::{Price, Rounding};
use serde::{Deserialize, Serialize};

use crate::money::Money;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// +1 for a buy, −1 for a sell: the sign of the position change.
    pub fn sign(self) -> i64 {
        match self {
            Self::Buy => 1,
            Self::Sell => -1,
        }
    }
}

/// What triggers and prices the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum OrderKind {
    /// At the next price.
    Market,
    /// At `limit_price` or better.
    Limit { limit_price: Price },
    /// A market order once the price reaches `stop_price` (stop-market).
    Stop { stop_price: Price },
    /// A limit order at `limit_price` once the price reaches `stop_price`.
    StopLimit {
        stop_price: Price,
        limit_price: Price,
    },
    /// A stop that follows the price: `trail_amount` (a price distance) or
    /// `trail_bps` below the highest price since it was placed (a sell), or
    /// above the lowest (a buy); the stop's level is
    /// [`Order::trail_stop`].
    TrailingStop {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trail_amount: Option<Price>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trail_bps: Option<i64>,
    },
}

impl OrderKind {
    /// The trailing stop's level for an extreme price `from` (the high for
    /// a sell, the low for a buy), to the market's `decimals`.
    pub fn trailed(&self, side: Side, from: Price, decimals: u32) -> Option<Price> {
        let Self::TrailingStop {
            trail_amount,
            trail_bps,
        } = *self
        else {
            return None;
        };
        let distance = match (trail_amount, trail_bps) {
            (Some(amount), _) => amount.ticks(),
            (None, Some(bps)) => {
                i64::try_from(i128::from(from.ticks()) * i128::from(bps) / 10_000).ok()?
            }
            (None, None) => return None,
        };
        let (ticks, rounding) = match side {
            Side::Sell => (from.ticks().checked_sub(distance)?, Rounding::Down),
            Side::Buy => (from.ticks().checked_add(distance)?, Rounding::Up),
        };
        Some(Price::from_ticks(ticks).rounded(decimals, rounding))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeInForce {
    /// Until the end of its trading day.
    Day,
    /// Immediate or cancel: what cannot fill on its first bar is cancelled.
    Ioc,
    /// In the opening auction only (market-on-open, limit-on-open): the
    /// first bar of its trading day.
    AtOpen,
    /// In the closing auction only (market-on-close, limit-on-close): at
    /// the close of its trading day's last bar.
    AtClose,
}

impl TimeInForce {
    /// Executes in an auction (where a market has them).
    pub fn is_auction(self) -> bool {
        matches!(self, Self::AtOpen | Self::AtClose)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    New,
    Accepted,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
    Expired,
}

impl OrderStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Filled | Self::Cancelled | Self::Rejected | Self::Expired
        )
    }

    /// Still able to trade.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Accepted | Self::PartiallyFilled)
    }
}

/// What can happen to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OrderEvent {
    Accept,
    Reject { reason: String },
    Fill { quantity: u64, price: Price },
    Cancel,
    Expire,
}

impl OrderEvent {
    fn name(&self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Reject { .. } => "reject",
            Self::Fill { .. } => "fill",
            Self::Cancel => "cancel",
            Self::Expire => "expire",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("an order that is {from:?} cannot {event}")]
    InvalidTransition {
        from: OrderStatus,
        event: &'static str,
    },
    #[error("a fill of {fill} exceeds the {remaining} shares left")]
    Overfill { fill: u64, remaining: u64 },
    #[error("a fill has a positive quantity")]
    EmptyFill,
}

impl OrderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTransition { .. } => "invalid-transition",
            Self::Overfill { .. } => "overfill",
            Self::EmptyFill => "empty-fill",
        }
    }
}

/// An order and what has happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    /// The caller's id: the same id twice is the same order (idempotency).
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    #[serde(flatten)]
    pub kind: OrderKind,
    pub time_in_force: TimeInForce,
    pub quantity: u64,
    pub filled_quantity: u64,
    /// Sum of fill price × quantity, for the average fill price.
    pub filled_notional: Money,
    pub status: OrderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_reason: Option<String>,
    /// A trailing stop's current level (it only moves in the order's favour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trail_stop: Option<Price>,
    /// A stop-limit order whose stop was reached: it now works as a limit order.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub triggered: bool,
}

impl Order {
    pub fn new(
        id: String,
        client_order_id: String,
        symbol: String,
        side: Side,
        kind: OrderKind,
        time_in_force: TimeInForce,
        quantity: u64,
    ) -> Self {
        Self {
            id,
            client_order_id,
            symbol,
            side,
            kind,
            time_in_force,
            quantity,
            filled_quantity: 0,
            filled_notional: Money::ZERO,
            status: OrderStatus::New,
            reject_reason: None,
            trail_stop: None,
            triggered: false,
        }
    }

    pub fn remaining(&self) -> u64 {
        self.quantity - self.filled_quantity
    }

    /// Average fill price (per share or coin), rounded down to a tick;
    /// `None` before the first fill.
    pub fn average_price(&self) -> Option<Price> {
        crate::portfolio::per_unit(self.filled_notional, self.filled_quantity, &self.symbol)
    }

    /// Apply an event; on error the order is unchanged.
    pub fn apply(&mut self, event: &OrderEvent) -> Result<OrderStatus, OrderError> {
        use OrderStatus::*;
        let invalid = || OrderError::InvalidTransition {
            from: self.status,
            event: event.name(),
        };
        let next = match (self.status, event) {
            (New, OrderEvent::Accept) => Accepted,
            (New, OrderEvent::Reject { reason }) => {
                self.reject_reason = Some(reason.clone());
                Rejected
            }
            (Accepted | PartiallyFilled, OrderEvent::Fill { quantity, price }) => {
                if *quantity == 0 {
                    return Err(OrderError::EmptyFill);
                }
                if *quantity > self.remaining() {
                    return Err(OrderError::Overfill {
                        fill: *quantity,
                        remaining: self.remaining(),
                    });
                }
                let notional =
                    crate::book::notional(&self.symbol, *price, *quantity).ok_or_else(invalid)?;
                self.filled_quantity += quantity;
                self.filled_notional += notional;
                if self.remaining() == 0 {
                    Filled
                } else {
                    PartiallyFilled
                }
            }
            (Accepted | PartiallyFilled, OrderEvent::Cancel) => Cancelled,
            (Accepted | PartiallyFilled, OrderEvent::Expire) => Expired,
            _ => return Err(invalid()),
        };
        self.status = next;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    fn order() -> Order {
        Order::new(
            "o-1".into(),
            "c-1".into(),
            "7203.T".into(),
            Side::Buy,
            OrderKind::Market,
            TimeInForce::Day,
            300,
        )
    }

    fn px(s: &str) -> Price {
        s.parse().unwrap()
    }

    fn at(status: OrderStatus) -> Order {
        let mut o = order();
        let path: &[OrderEvent] = match status {
            New => &[],
            Accepted => &[OrderEvent::Accept],
            PartiallyFilled => &[OrderEvent::Accept, fill(100)],
            Filled => &[OrderEvent::Accept, fill(300)],
            Cancelled => &[OrderEvent::Accept, OrderEvent::Cancel],
            Rejected => &[OrderEvent::Reject {
                reason: "risk".into(),
            }],
            Expired => &[OrderEvent::Accept, OrderEvent::Expire],
        };
        for e in path {
            o.apply(e).unwrap();
        }
        assert_eq!(o.status, status);
        o
    }

    fn fill(quantity: u64) -> OrderEvent {
        OrderEvent::Fill {
            quantity,
            price: px("2500"),
        }
    }

    /// Every (state, event) pair: the next state, or an invalid transition.
    #[test]
    fn the_state_machine_case_table() {
        let reject = OrderEvent::Reject {
            reason: "risk".into(),
        };
        let states = [
            New,
            Accepted,
            PartiallyFilled,
            Filled,
            Cancelled,
            Rejected,
            Expired,
        ];
        #[rustfmt::skip]
        let table: [(OrderEvent, [Option<OrderStatus>; 7]); 6] = [
            //                 New              Accepted               Partially              Filled Cancelled Rejected Expired
            (OrderEvent::Accept, [Some(Accepted), None,                  None,                  None, None, None, None]),
            (reject.clone(),     [Some(Rejected), None,                  None,                  None, None, None, None]),
            (fill(100),          [None,           Some(PartiallyFilled), Some(PartiallyFilled), None, None, None, None]),
            (fill(200),          [None,           Some(PartiallyFilled), Some(Filled),          None, None, None, None]),
            (OrderEvent::Cancel, [None,           Some(Cancelled),       Some(Cancelled),       None, None, None, None]),
            (OrderEvent::Expire, [None,           Some(Expired),         Some(Expired),         None, None, None, None]),
        ];
        for (event, row) in table {
            for (from, expected) in states.into_iter().zip(row) {
                let mut o = at(from);
                let before = o.clone();
                match (o.apply(&event), expected) {
                    (Ok(got), Some(want)) => assert_eq!(got, want, "{from:?} + {event:?}"),
                    (Err(OrderError::InvalidTransition { .. }), None) => {
                        assert_eq!(o, before, "a refused event changes nothing")
                    }
                    (got, want) => panic!("{from:?} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
        for s in states {
            assert_eq!(
                s.is_terminal(),
                [Filled, Cancelled, Rejected, Expired].contains(&s)
            );
        }
    }

    #[test]
    fn fills_accumulate_and_never_exceed_the_order() {
        let mut o = at(Accepted);
        o.apply(&OrderEvent::Fill {
            quantity: 100,
            price: px("2500"),
        })
        .unwrap();
        o.apply(&OrderEvent::Fill {
            quantity: 100,
            price: px("2510"),
        })
        .unwrap();
        assert_eq!((o.filled_quantity, o.remaining()), (200, 100));
        assert_eq!(o.average_price(), Some(px("2505")));
        let over = o.apply(&fill(101)).unwrap_err();
        assert_eq!(
            over,
            OrderError::Overfill {
                fill: 101,
                remaining: 100
            }
        );
        assert_eq!(o.apply(&fill(0)).unwrap_err(), OrderError::EmptyFill);
        assert_eq!(o.filled_quantity, 200, "refused fills change nothing");
        assert_eq!(at(Rejected).reject_reason.as_deref(), Some("risk"));
    }

    #[test]
    fn orders_serialize_flat_with_their_type() {
        let mut o = order();
        o.kind = OrderKind::Limit {
            limit_price: px("2450.5"),
        };
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["type"], "limit");
        assert_eq!(json["limit_price"], "2450.5000");
        assert_eq!(json["status"], "new");
        assert_eq!(json["side"], "buy");
        let back: Order = serde_json::from_value(json).unwrap();
        assert_eq!(back, o);
    }
}
