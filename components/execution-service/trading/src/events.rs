//! The account's events. Every change to a [`Book`] is one of these, and
//! [`Book::apply`] is the only code that changes a book: the operations
//! (submit, sync, cancel, a state change, ...) decide which events happen
//! and emit them, and applying an event is the same code live and on
//! replay. So a book rebuilt from its events ([`Book::replay`]) is the
//! book, which is what the [`ledger`](crate::ledger) relies on: the events
//! are the record, stored once each under their sequence numbers; the book
//! is their running fold.

use chrono::{DateTime, NaiveDate, Utc};
use market_data::Price;
use serde::{Deserialize, Serialize};

use crate::book::{
    Book, EquityPoint, Exits, FillRecord, Legs, Notice, OrderRecord, Origin, StateChange,
};
use crate::fx::Currency;
use crate::money::Money;
use crate::order::{OrderEvent, OrderKind};
use crate::portfolio::{Fill, Portfolio};

/// Submissions of the last minute the book remembers at most (the
/// order-rate limit counts them; a limit above this is never reached).
pub const RATE_WINDOW: usize = 1_000;
/// Equity points the book keeps (the day before and the day); the whole
/// curve is the ledger's ([`crate::ledger::Ledger::equity_curve`]).
pub const EQUITY_KEPT: usize = 2;
/// State changes the book keeps, newest last; all of them are events.
pub const STATE_CHANGES_KEPT: usize = 20;

/// A fact about the account, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// The account opened with its starting cash, in its base currency.
    Opened {
        cash: Money,
        #[serde(default)]
        currency: Currency,
    },
    /// An order entered the book, accepted or rejected by the risk engine
    /// (the record says which, and why).
    OrderPlaced {
        record: Box<OrderRecord>,
    },
    /// A working order (partly) filled: the order's fill and the portfolio's.
    OrderFilled {
        order_id: String,
        fill: FillRecord,
    },
    /// A bar reached a stop-limit's stop (`triggered`), or moved a
    /// trailing stop's level (`trail_stop`).
    OrderTriggered {
        order_id: String,
        triggered: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trail_stop: Option<Price>,
    },
    /// A working order's quantity or prices were changed by its caller.
    OrderModified {
        order_id: String,
        quantity: u64,
        kind: OrderKind,
        reference_price: Price,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trail_stop: Option<Price>,
        /// A bracket's new legs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bracket: Option<Legs>,
    },
    /// A working order expired with its session (`expired`) or was cancelled.
    OrderClosed {
        order_id: String,
        expired: bool,
    },
    /// A position's protective exits, or none once it is closed.
    ExitsSet {
        symbol: String,
        exits: Option<Exits>,
    },
    /// A symbol's bars were worked through the instant `through` (of
    /// trading day `date`); its mark is that bar's close (`None`: no price
    /// seen yet, only the instant from which its bars matter).
    Marked {
        symbol: String,
        date: NaiveDate,
        through: DateTime<Utc>,
        close: Option<Price>,
    },
    /// A market day started, at this equity.
    DayStarted {
        date: NaiveDate,
        equity: Money,
    },
    /// The equity curve's point for a day (replacing one of the same day).
    EquityRecorded {
        point: EquityPoint,
    },
    StateChanged {
        change: StateChange,
    },
    /// A notice for people, queued for delivery (the outbox).
    NoticeQueued {
        notice: Notice,
    },
    /// Notices delivered (by their outbox sequence numbers).
    NoticesDelivered {
        sequence: Vec<u64>,
    },
    /// Finished orders moved out of the book into the archive.
    OrdersArchived {
        ids: Vec<String>,
    },
}

impl Book {
    /// The book its events make.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut book = Self::blank();
        for event in events {
            book.apply(event);
            book.events += 1;
        }
        book
    }

    /// Apply one event and journal it under the next sequence number.
    pub(crate) fn emit(&mut self, event: Event) {
        self.apply(&event);
        self.events += 1;
        self.journal.push((self.events, event));
    }

    /// What an event does to the book. Deterministic, and the only change a
    /// book ever sees; an event that cannot apply (a fill for an order that
    /// is not working) changes nothing, live and on replay alike.
    pub fn apply(&mut self, event: &Event) {
        // The number this event has: the book has applied `events` before it.
        let sequence = self.events + 1;
        match event {
            Event::Opened { cash, currency } => {
                self.portfolio = Portfolio::open(*cash, *currency);
                self.peak_equity = *cash;
            }
            Event::OrderPlaced { record } => {
                let id = record.order.id.clone();
                self.next_order += 1;
                self.client_ids
                    .insert(record.request.client_order_id.clone(), id.clone());
                // Callers' orders count towards the order-rate limit; the
                // protective exits are the engine's own.
                if matches!(record.origin, Origin::Api | Origin::Cycle) {
                    let window = record.submitted_at - chrono::Duration::seconds(60);
                    self.recent_submissions.retain(|t| *t > window);
                    self.recent_submissions.push(record.submitted_at);
                    // A flood of submissions does not grow the book: past
                    // this many in a minute, every limit is reached anyway.
                    let surplus = self.recent_submissions.len().saturating_sub(RATE_WINDOW);
                    self.recent_submissions.drain(..surplus);
                }
                let mut record = (**record).clone();
                record.events = vec![sequence];
                self.orders.insert(id, record);
            }
            Event::OrderFilled { order_id, fill } => {
                let Some(record) = self.orders.get_mut(order_id) else {
                    return;
                };
                let execution = fill.execution;
                let mut order = record.order.clone();
                let filled = OrderEvent::Fill {
                    quantity: execution.quantity,
                    price: execution.price,
                };
                if order.apply(&filled).is_err() {
                    return;
                }
                let portfolio_fill = Fill {
                    side: order.side,
                    quantity: execution.quantity,
                    price: execution.price,
                    commission: execution.commission,
                    currency: fill.currency,
                    rate: fill.rate,
                    conversion: fill.conversion,
                };
                if self
                    .portfolio
                    .apply(&order.symbol, &portfolio_fill)
                    .is_err()
                {
                    return;
                }
                record.order = order;
                record.fills.push(*fill);
                record.events.push(sequence);
            }
            Event::OrderTriggered {
                order_id,
                triggered,
                trail_stop,
            } => {
                if let Some(record) = self.orders.get_mut(order_id) {
                    record.order.triggered = *triggered;
                    record.order.trail_stop = *trail_stop;
                    record.events.push(sequence);
                }
            }
            Event::OrderModified {
                order_id,
                quantity,
                kind,
                reference_price,
                trail_stop,
                bracket,
            } => {
                if let Some(record) = self.orders.get_mut(order_id) {
                    record.order.quantity = *quantity;
                    record.order.kind = *kind;
                    record.order.trail_stop = *trail_stop;
                    record.reference_price = *reference_price;
                    if bracket.is_some() {
                        record.legs = *bracket;
                    }
                    record.events.push(sequence);
                }
            }
            Event::OrderClosed { order_id, expired } => {
                if let Some(record) = self.orders.get_mut(order_id) {
                    let how = if *expired {
                        OrderEvent::Expire
                    } else {
                        OrderEvent::Cancel
                    };
                    if record.order.apply(&how).is_ok() {
                        record.events.push(sequence);
                    }
                }
            }
            Event::ExitsSet { symbol, exits } => match exits {
                Some(exits) => {
                    self.exits.insert(symbol.clone(), exits.clone());
                }
                None => {
                    self.exits.remove(symbol);
                }
            },
            Event::Marked {
                symbol,
                date,
                through,
                close,
            } => {
                self.processed.insert(symbol.clone(), *through);
                if let Some(close) = close {
                    self.marks.insert(symbol.clone(), (*date, *close));
                }
            }
            Event::DayStarted { date, equity } => self.day_start = Some((*date, *equity)),
            Event::EquityRecorded { point } => {
                match self.equity_curve.last_mut() {
                    Some(last) if last.date == point.date => *last = *point,
                    _ => self.equity_curve.push(*point),
                }
                let surplus = self.equity_curve.len().saturating_sub(EQUITY_KEPT);
                self.equity_curve.drain(..surplus);
                self.equity_since.get_or_insert(point.date);
                self.peak_equity = self.peak_equity.max(point.equity);
            }
            Event::StateChanged { change } => {
                self.state = change.to;
                self.state_changes.push(change.clone());
                let surplus = self.state_changes.len().saturating_sub(STATE_CHANGES_KEPT);
                self.state_changes.drain(..surplus);
            }
            Event::NoticeQueued { notice } => {
                self.outbox.push((self.next_notice, notice.clone()));
                self.next_notice += 1;
            }
            Event::NoticesDelivered { sequence } => {
                self.outbox.retain(|(n, _)| !sequence.contains(n));
            }
            Event::OrdersArchived { ids } => {
                for id in ids {
                    if self
                        .orders
                        .get(id)
                        .is_some_and(|r| r.order.status.is_terminal())
                        && let Some(record) = self.orders.remove(id)
                    {
                        // Its client order id is in the ledger's keys now.
                        self.client_ids.remove(&record.order.client_order_id);
                    }
                }
            }
        }
    }
}
