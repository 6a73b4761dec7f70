//! The account book: every order, fill, position and state change of one
//! paper account, and the operations on it. A [`Book`] is a value: the
//! [`ledger`](crate::ledger) loads it, applies one operation and stores it
//! back atomically, so a risk check and the reservation it approves are one
//! step even when several hosts serve the same account. An operation
//! changes the book only by emitting [`Event`]s (see [`crate::events`]): the
//! book is the fold of its events.
//!
//! Reservations: the risk engine sees working orders as if filled at their
//! reference price (buys hold cash and count towards the position and the open
//! positions; sells count against what may still be sold), so no set of
//! concurrently accepted orders can together breach a limit.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use market_data::{Bar, Market, Price, Symbol};
use serde::{Deserialize, Serialize};

use crate::broker::{Execution, OrderGateway, PaperBroker, Report};
use crate::events::Event;
use crate::money::Money;
use crate::order::{Order, OrderEvent, OrderKind, OrderStatus, Side, TimeInForce};
use crate::portfolio::{Fill, Portfolio};
use crate::risk::{self, Denial, Exposure, HaltPolicy, Intent, RiskLimits, TradingState};

/// Orders a request may ask for at most (a guard against absurd sizes, far above any limit).
pub const MAX_QUANTITY: u64 = 100_000_000;

/// Orders submitted outside the session: queued for the next one, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionPolicy {
    Queue,
    Reject,
}

/// Everything an operation needs besides the book.
#[derive(Debug, Clone)]
pub struct Context {
    pub limits: RiskLimits,
    pub broker: PaperBroker,
    pub session_policy: SessionPolicy,
    pub market: MarketView,
}

/// The market as data-service shows it at this moment.
#[derive(Debug, Clone, Default)]
pub struct MarketView {
    /// The market clock's date: bars up to it are visible.
    pub as_of: Option<NaiveDate>,
    /// A live clock (sessions apply); the replay clock stands after a close.
    pub live: bool,
    /// Wall time, for sessions (live) and the order-rate window.
    pub now: DateTime<Utc>,
    /// Daily bars per symbol, oldest first, none after `as_of`.
    pub bars: BTreeMap<String, Vec<Bar>>,
}

impl MarketView {
    fn last_bar(&self, symbol: &str) -> Option<&Bar> {
        self.bars.get(symbol).and_then(|b| b.last())
    }
}

/// Why an order was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// By an API caller.
    Api,
    /// By the trading cycle, from a model signal.
    Cycle,
    /// The automatic protective exits.
    StopLoss,
    TakeProfit,
    /// HALTED with `halt_policy = flatten` closing a position.
    KillSwitch,
}

/// What a caller asks for. With no quantity, the order is sized from the
/// stop distance (buys only). (`deny_unknown_fields` does not work with the
/// flattened kind: [`OrderRequest::FIELDS`] lets a caller check instead.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    #[serde(flatten)]
    pub kind: OrderKind,
    #[serde(default = "day")]
    pub time_in_force: TimeInForce,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
}

impl OrderRequest {
    /// Every field a request may have.
    pub const FIELDS: &[&str] = &[
        "client_order_id",
        "symbol",
        "side",
        "type",
        "limit_price",
        "stop_price",
        "time_in_force",
        "quantity",
    ];
}

fn day() -> TimeInForce {
    TimeInForce::Day
}

/// An order with what the book knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    #[serde(flatten)]
    pub order: Order,
    pub origin: Origin,
    /// The request as received, to tell a retry from a conflicting reuse of its id.
    pub request: OrderRequest,
    /// The price the risk engine checked it at.
    pub reference_price: Price,
    pub submitted_at: DateTime<Utc>,
    /// The market date it was submitted on (after that day's close on the replay clock).
    pub as_of: NaiveDate,
    /// The first bar it may trade on, if it did not execute at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub works_from: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    pub fills: Vec<FillRecord>,
    /// The sequence numbers of its events, oldest first (its history).
    #[serde(default)]
    pub events: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    /// The market date of the bar it filled on.
    pub date: NaiveDate,
    #[serde(flatten)]
    pub execution: Execution,
}

/// Protective exits of a position, from its average entry price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exits {
    pub stop_loss: Price,
    pub take_profit: Price,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub at: DateTime<Utc>,
    pub as_of: NaiveDate,
    pub from: TradingState,
    pub to: TradingState,
    /// `admin` or `risk-engine`.
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquityPoint {
    pub date: NaiveDate,
    pub equity: Money,
    pub cash: Money,
    /// Equity minus the previous point's (the day's P&L in the market's calendar).
    pub pnl: Money,
}

/// Something to tell people about; kept in the book until delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Notice {
    Filled {
        order_id: String,
        symbol: String,
        side: Side,
        quantity: u64,
        price: Price,
        origin: Origin,
    },
    Denied {
        order_id: String,
        symbol: String,
        denial: Denial,
    },
    StateChanged(StateChange),
}

/// One paper account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    pub portfolio: Portfolio,
    pub state: TradingState,
    /// By order id (`ord-00000001`, ...): the working orders and the most
    /// recent finished ones; older finished orders are archived out of the
    /// book (see [`Book::archivable`]) so that it stays small.
    pub orders: BTreeMap<String, OrderRecord>,
    /// Client order id → order id, for the orders in the book; those of
    /// archived orders are in the ledger's keys (see [`Book::submit_checked`]).
    pub client_ids: BTreeMap<String, String>,
    pub next_order: u64,
    pub exits: BTreeMap<String, Exits>,
    /// Last close seen per symbol (its date, price).
    pub marks: BTreeMap<String, (NaiveDate, Price)>,
    /// The last bar date worked through per symbol.
    pub processed: BTreeMap<String, NaiveDate>,
    pub day_start: Option<(NaiveDate, Money)>,
    pub peak_equity: Money,
    /// The last equity points (see [`crate::events::EQUITY_KEPT`]); the
    /// ledger holds the whole curve.
    pub equity_curve: Vec<EquityPoint>,
    /// The equity curve's first day.
    #[serde(default)]
    pub equity_since: Option<NaiveDate>,
    /// Submission times within the last minute.
    pub recent_submissions: Vec<DateTime<Utc>>,
    /// The latest state changes (see [`crate::events::STATE_CHANGES_KEPT`]).
    pub state_changes: Vec<StateChange>,
    /// Notices not yet delivered (an outbox: delivery removes them).
    pub outbox: Vec<(u64, Notice)>,
    pub next_notice: u64,
    /// The sequence number of the last event applied (the count of events).
    #[serde(default)]
    pub events: u64,
    /// Events committed with this book that may not be in their own keys
    /// yet: the ledger writes them there, then drops them from here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<(u64, Event)>,
}

/// Why a submission did not become a working or filled order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// A field of the order is wrong; the code names it (`invalid-quantity`).
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("client order id `{0}` was used for a different order")]
    Conflict(String),
    #[error("no price for {0} up to the market clock")]
    NoPrice(String),
    #[error("the order was denied: {}", .0.denial.as_ref().map(ToString::to_string).unwrap_or_default())]
    Denied(Box<OrderRecord>),
    /// The ledger's keys could not be read: nothing was decided.
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    /// The client order id belongs to an archived order: the caller answers
    /// with it from the archive (and checks the request matches).
    #[error("client order id `{client_order_id}` is archived order {order_id}")]
    Archived {
        client_order_id: String,
        order_id: String,
    },
}

impl SubmitError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { field, .. } => match *field {
                "client_order_id" => "invalid-client_order_id",
                "symbol" => "invalid-symbol",
                "quantity" => "invalid-quantity",
                "limit_price" => "invalid-limit_price",
                "stop_price" => "invalid-stop_price",
                _ => "invalid-order",
            },
            Self::Conflict(_) => "idempotency-conflict",
            Self::NoPrice(_) => "no-price",
            Self::Denied(record) => record.denial.as_ref().map_or("denied", Denial::code),
            Self::Archived { .. } => "archived",
            Self::Unavailable(_) => "ledger-unavailable",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Conflict(_) => 409,
            Self::NoPrice(_) | Self::Denied(_) => 422,
            Self::Archived { .. } => 200,
            Self::Unavailable(_) => 503,
        }
    }
}

/// A submission's result: the order, and whether it is a replay of an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub record: OrderRecord,
    pub replayed: bool,
}

impl Book {
    /// A new account: its first event opens it with `cash`.
    pub fn new(cash: Money) -> Self {
        let mut book = Self::blank();
        book.emit(Event::Opened { cash });
        book
    }

    /// A book with nothing in it, not even its cash: what events apply to.
    pub(crate) fn blank() -> Self {
        let cash = Money::ZERO;
        Self {
            portfolio: Portfolio::new(cash),
            state: TradingState::Active,
            orders: BTreeMap::new(),
            client_ids: BTreeMap::new(),
            next_order: 1,
            exits: BTreeMap::new(),
            marks: BTreeMap::new(),
            processed: BTreeMap::new(),
            day_start: None,
            peak_equity: cash,
            equity_curve: Vec::new(),
            equity_since: None,
            recent_submissions: Vec::new(),
            state_changes: Vec::new(),
            outbox: Vec::new(),
            next_notice: 1,
            events: 0,
            journal: Vec::new(),
        }
    }

    fn marks(&self) -> BTreeMap<String, Price> {
        self.marks
            .iter()
            .map(|(s, (_, p))| (s.clone(), *p))
            .collect()
    }

    pub fn equity(&self) -> Money {
        self.portfolio.equity(&self.marks())
    }

    pub fn daily_pnl(&self) -> Money {
        self.day_start
            .map_or(Money::ZERO, |(_, start)| self.equity() - start)
    }

    pub fn working_orders(&self) -> impl Iterator<Item = &OrderRecord> {
        self.orders.values().filter(|r| r.order.status.is_open())
    }

    fn notify(&mut self, notice: Notice) {
        self.emit(Event::NoticeQueued { notice });
    }

    /// Drop delivered notices (by the sequence numbers the outbox gave them).
    pub fn delivered(&mut self, sequence: &[u64]) {
        let sequence: Vec<u64> = self
            .outbox
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| sequence.contains(n))
            .collect();
        if !sequence.is_empty() {
            self.emit(Event::NoticesDelivered { sequence });
        }
    }

    fn change_state(&mut self, ctx: &Context, to: TradingState, by: &str, reason: String) {
        if self.state == to {
            return;
        }
        let change = StateChange {
            at: ctx.market.now,
            as_of: ctx.market.as_of.unwrap_or(ctx.market.now.date_naive()),
            from: self.state,
            to,
            by: by.to_string(),
            reason,
        };
        self.emit(Event::StateChanged {
            change: change.clone(),
        });
        self.notify(Notice::StateChanged(change));
        if to != TradingState::Active {
            self.on_leaving_active(ctx, to);
        }
    }

    /// Set the trading state by API (the caller checked the admin role).
    pub fn set_state(&mut self, ctx: &Context, to: TradingState, reason: String) -> bool {
        let changed = self.state != to;
        self.change_state(ctx, to, "admin", reason);
        changed
    }

    /// Bring the book up to the market clock: working orders and protective
    /// exits meet every bar they have not seen, day by day; marks, the equity
    /// curve and the daily P&L follow; a loss limit that is hit switches
    /// trading to REDUCING.
    pub fn sync(&mut self, ctx: &Context) {
        let mut dates: Vec<NaiveDate> = Vec::new();
        for (symbol, bars) in &ctx.market.bars {
            // A symbol the book neither holds nor works: nothing of ours can
            // trade on its past bars, only its last close matters.
            let involved = self.portfolio.quantity(symbol) > 0
                || self.working_orders().any(|r| &r.order.symbol == symbol);
            if !involved || !self.processed.contains_key(symbol) {
                if let Some(last) = bars.last() {
                    self.mark(symbol, last.date, Some(last.close));
                }
                continue;
            }
            let seen = self.processed.get(symbol).copied();
            dates.extend(
                bars.iter()
                    .map(|b| b.date)
                    .filter(|d| seen.is_none_or(|s| *d > s)),
            );
        }
        dates.sort_unstable();
        dates.dedup();
        for date in dates {
            self.roll_day(date);
            for (symbol, bars) in &ctx.market.bars {
                let Some(bar) = bars.iter().find(|b| b.date == date) else {
                    continue;
                };
                if self.processed.get(symbol).is_some_and(|seen| *seen >= date) {
                    continue;
                }
                self.work_bar(ctx, symbol, bar);
                self.mark(symbol, date, Some(bar.close));
            }
            self.record_equity(date);
            self.check_loss_limits(ctx);
        }
        if let Some(as_of) = ctx.market.as_of {
            self.roll_day(as_of);
            self.end_sessions(ctx, as_of);
            self.record_equity(as_of);
        }
    }

    /// Working orders whose session is over without a bar to trade on (the
    /// symbol did not trade, or its history ends) expire, or are cancelled
    /// if IOC: the session of `works_from` is over once the clock is past
    /// it, or, on the replay clock (which stands after the close), at it.
    fn end_sessions(&mut self, ctx: &Context, as_of: NaiveDate) {
        let over = |d: NaiveDate| d < as_of || (!ctx.market.live && d == as_of);
        let ended: Vec<String> = self
            .working_orders()
            .filter(|r| r.works_from.is_some_and(over))
            .map(|r| r.order.id.clone())
            .collect();
        for id in ended {
            self.end_order(&id);
        }
    }

    /// A working order's session is over: a day order expires, an IOC order
    /// is cancelled.
    fn end_order(&mut self, id: &str) {
        let expired = self.orders[id].order.time_in_force == TimeInForce::Day;
        self.emit(Event::OrderClosed {
            order_id: id.to_string(),
            expired,
        });
    }

    /// `symbol`'s bars are worked through `date` (and its mark is `close`):
    /// an event only when that says something new.
    fn mark(&mut self, symbol: &str, date: NaiveDate, close: Option<Price>) {
        let same_date = self.processed.get(symbol) == Some(&date);
        let same_mark = close.is_none_or(|c| self.marks.get(symbol) == Some(&(date, c)));
        if same_date && same_mark {
            return;
        }
        self.emit(Event::Marked {
            symbol: symbol.to_string(),
            date,
            close,
        });
    }

    /// A new market day starts from the equity at the last closes.
    fn roll_day(&mut self, date: NaiveDate) {
        if self.day_start.is_none_or(|(d, _)| d < date) {
            let equity = self.equity();
            self.emit(Event::DayStarted { date, equity });
        }
    }

    /// The equity curve's point for `date` (replacing one of the same date;
    /// the curve only moves forward).
    fn record_equity(&mut self, date: NaiveDate) {
        if self.equity_curve.last().is_some_and(|p| p.date > date) {
            return;
        }
        let equity = self.equity();
        let previous = self
            .equity_curve
            .iter()
            .rev()
            .find(|p| p.date < date)
            .map_or(self.day_start.map_or(equity, |(_, s)| s), |p| p.equity);
        let point = EquityPoint {
            date,
            equity,
            cash: self.portfolio.cash,
            pnl: equity - previous,
        };
        if self.equity_curve.last() != Some(&point) {
            self.emit(Event::EquityRecorded { point });
        }
    }

    fn check_loss_limits(&mut self, ctx: &Context) {
        if self.state != TradingState::Active {
            return;
        }
        let limits = &ctx.limits;
        let daily = self.daily_pnl();
        let drawdown = risk::drawdown_bps(self.equity(), self.peak_equity);
        let reason = if daily <= -limits.max_daily_loss {
            format!(
                "daily loss {} reached the {} limit",
                -daily, limits.max_daily_loss
            )
        } else if drawdown >= limits.max_drawdown_bps {
            format!(
                "drawdown {drawdown} bps reached the {} bps limit",
                limits.max_drawdown_bps
            )
        } else {
            return;
        };
        self.change_state(ctx, TradingState::Reducing, "risk-engine", reason);
    }

    /// One bar of `symbol`: working orders first (they trade from the open),
    /// then the protective exits of the position over the bar's range.
    fn work_bar(&mut self, ctx: &Context, symbol: &str, bar: &Bar) {
        let lot = lot_size(symbol);
        let working: Vec<String> = self
            .working_orders()
            .filter(|r| r.order.symbol == symbol && r.works_from.is_some_and(|d| d <= bar.date))
            .map(|r| r.order.id.clone())
            .collect();
        for id in working {
            let record = &self.orders[&id];
            // The kill switch's sells, like the protective exits, are not
            // left half done by the participation cap.
            let report = if record.origin == Origin::KillSwitch {
                uncapped(ctx).execute_on_bar(&record.order, bar, lot)
            } else {
                ctx.broker.execute_on_bar(&record.order, bar, lot)
            };
            self.apply_report(ctx, &id, bar.date, report);
        }
        self.protective_exit(ctx, symbol, bar);
    }

    fn protective_exit(&mut self, ctx: &Context, symbol: &str, bar: &Bar) {
        let held = self.portfolio.quantity(symbol);
        let Some(exits) = self.exits.get(symbol).copied() else {
            return;
        };
        // Armed in every state: HALTED stops new orders, not the stops.
        if held == 0 {
            return;
        }
        // A bar that spans both: the stop is assumed first (the cautious reading).
        let (origin, kind) = if bar.low <= exits.stop_loss {
            (
                Origin::StopLoss,
                OrderKind::Stop {
                    stop_price: exits.stop_loss,
                },
            )
        } else if bar.high >= exits.take_profit {
            (
                Origin::TakeProfit,
                OrderKind::Limit {
                    limit_price: exits.take_profit,
                },
            )
        } else {
            return;
        };
        // The exit sells everything: working sells of the symbol are superseded.
        self.cancel_working(|r| r.order.symbol == symbol && r.order.side == Side::Sell);
        let reference = match kind {
            OrderKind::Stop { stop_price } => stop_price,
            OrderKind::Limit { limit_price } => limit_price,
            OrderKind::Market => bar.open,
        };
        let id = self.place_system_sell(
            ctx, symbol, origin, kind, held, reference, bar.date, bar.date,
        );
        // The exit trades inside the bar, without the participation cap: a
        // protective stop is not left half done.
        let report = {
            let order = &self.orders[&id].order;
            let mut report = uncapped(ctx).execute_on_bar(order, bar, 1);
            report.executions.iter_mut().for_each(|e| {
                e.quantity = e.quantity.min(held);
            });
            report
        };
        self.apply_report(ctx, &id, bar.date, report);
    }

    /// Place a sell of `quantity` the system decided (an exit), working from
    /// `works_from`, IOC; its id.
    #[allow(clippy::too_many_arguments)]
    fn place_system_sell(
        &mut self,
        ctx: &Context,
        symbol: &str,
        origin: Origin,
        kind: OrderKind,
        quantity: u64,
        reference: Price,
        as_of: NaiveDate,
        works_from: NaiveDate,
    ) -> String {
        let id = self.next_id();
        let request = OrderRequest {
            client_order_id: format!("{}-{id}", origin_label(origin)),
            symbol: symbol.to_string(),
            side: Side::Sell,
            kind,
            time_in_force: TimeInForce::Ioc,
            quantity: Some(quantity),
        };
        let mut order = Order::new(
            id.clone(),
            request.client_order_id.clone(),
            symbol.to_string(),
            Side::Sell,
            kind,
            TimeInForce::Ioc,
            quantity,
        );
        let _ = order.apply(&OrderEvent::Accept);
        self.emit(Event::OrderPlaced {
            record: Box::new(OrderRecord {
                order,
                origin,
                request,
                reference_price: reference,
                submitted_at: ctx.market.now,
                as_of,
                works_from: Some(works_from),
                denial: None,
                fills: Vec::new(),
                events: Vec::new(),
            }),
        });
        id
    }

    /// Leaving ACTIVE: working entries (buys) are cancelled, so that REDUCING
    /// and HALTED only ever shrink positions; HALTED with `flatten` also
    /// cancels the working sells and sells every position at the next bar's
    /// open (the next trading day's, on daily bars).
    fn on_leaving_active(&mut self, ctx: &Context, to: TradingState) {
        let flatten = to == TradingState::Halted && ctx.limits.on_halt == HaltPolicy::Flatten;
        self.cancel_working(|r| flatten || r.order.side == Side::Buy);
        if !flatten {
            return;
        }
        let as_of = ctx.market.as_of.unwrap_or(ctx.market.now.date_naive());
        let held: Vec<(String, u64)> = self
            .portfolio
            .positions
            .iter()
            .map(|(symbol, p)| (symbol.clone(), p.quantity))
            .filter(|(_, q)| *q > 0)
            .collect();
        for (symbol, quantity) in held {
            let works_from = market_of(&symbol).next_trading_day(as_of);
            let reference = self
                .marks
                .get(&symbol)
                .map_or(Price::from_ticks(0), |(_, p)| *p);
            self.place_system_sell(
                ctx,
                &symbol,
                Origin::KillSwitch,
                OrderKind::Market,
                quantity,
                reference,
                as_of,
                works_from,
            );
        }
    }

    /// Cancel the working orders `which` picks.
    fn cancel_working(&mut self, which: impl Fn(&OrderRecord) -> bool) {
        let cancelled: Vec<String> = self
            .working_orders()
            .filter(|r| which(r))
            .map(|r| r.order.id.clone())
            .collect();
        for id in cancelled {
            self.emit(Event::OrderClosed {
                order_id: id,
                expired: false,
            });
        }
    }

    /// The id the next order placed gets.
    fn next_id(&self) -> String {
        format!("ord-{:08}", self.next_order)
    }

    /// Apply a gateway's report to an order and the portfolio. A buy fill the
    /// cash cannot pay for is cut to what it can (whole lots).
    fn apply_report(&mut self, ctx: &Context, id: &str, date: NaiveDate, report: Report) {
        let lot = lot_size(&self.orders[id].order.symbol);
        for mut execution in report.executions {
            let (symbol, side, origin) = {
                let o = &self.orders[id];
                (o.order.symbol.clone(), o.order.side, o.origin)
            };
            if side == Side::Sell {
                execution.quantity = execution.quantity.min(self.portfolio.quantity(&symbol));
            }
            if side == Side::Buy {
                let affordable =
                    affordable_shares(&ctx.broker, self.portfolio.cash, execution.price, lot);
                if affordable < execution.quantity {
                    execution.quantity = affordable;
                    let notional =
                        Money::notional(execution.price, affordable).unwrap_or(Money::ZERO);
                    execution.commission = ctx.broker.model.commission(notional);
                }
            }
            if execution.quantity == 0 {
                continue;
            }
            let fill = Fill {
                side,
                quantity: execution.quantity,
                price: execution.price,
                commission: execution.commission,
            };
            let mut order = self.orders[id].order.clone();
            let fills = order
                .apply(&OrderEvent::Fill {
                    quantity: execution.quantity,
                    price: execution.price,
                })
                .is_ok();
            if !fills || !self.portfolio.can_apply(&symbol, &fill) {
                continue;
            }
            self.emit(Event::OrderFilled {
                order_id: id.to_string(),
                fill: FillRecord { date, execution },
            });
            self.refresh_exits(ctx, &symbol);
            self.notify(Notice::Filled {
                order_id: id.to_string(),
                symbol,
                side,
                quantity: execution.quantity,
                price: execution.price,
                origin,
            });
        }
        if report.done && self.orders[id].order.status.is_open() {
            self.end_order(id);
        }
    }

    fn refresh_exits(&mut self, ctx: &Context, symbol: &str) {
        let exits = self
            .portfolio
            .positions
            .get(symbol)
            .and_then(|p| p.entry_price())
            .map(|entry| {
                let (stop_loss, take_profit) =
                    risk::exits(&ctx.limits, entry, price_decimals(symbol));
                Exits {
                    stop_loss,
                    take_profit,
                }
            });
        if self.exits.get(symbol) != exits.as_ref() {
            self.emit(Event::ExitsSet {
                symbol: symbol.to_string(),
                exits,
            });
        }
    }

    /// The account as the risk engine must see it for `symbol`, working orders
    /// counted as filled at their reference price.
    pub fn exposure(&self, ctx: &Context, symbol: &str) -> Exposure {
        let mut position = i64::try_from(self.portfolio.quantity(symbol)).unwrap_or(i64::MAX);
        let mut reserved = Money::ZERO;
        let mut open: std::collections::BTreeSet<&str> = self
            .portfolio
            .positions
            .iter()
            .filter(|(_, p)| p.quantity > 0)
            .map(|(s, _)| s.as_str())
            .collect();
        for r in self.working_orders() {
            let remaining = r.order.remaining();
            if r.order.side == Side::Buy {
                let price = ctx.broker.model.slipped(
                    Side::Buy,
                    r.reference_price,
                    price_decimals(&r.order.symbol),
                );
                let notional = Money::notional(price, remaining).unwrap_or(Money::ZERO);
                reserved += notional + ctx.broker.model.commission(notional);
                open.insert(r.order.symbol.as_str());
            }
            if r.order.symbol == symbol {
                let q = i64::try_from(remaining).unwrap_or(i64::MAX);
                position = position.saturating_add(r.order.side.sign().saturating_mul(q));
            }
        }
        let window_start = ctx.market.now - chrono::Duration::seconds(60);
        Exposure {
            state: self.state,
            position,
            open_positions: open.len(),
            cash: self.portfolio.cash - reserved,
            daily_pnl: self.daily_pnl(),
            equity: self.equity(),
            peak_equity: self.peak_equity,
            orders_last_minute: self
                .recent_submissions
                .iter()
                .filter(|t| **t > window_start)
                .count() as u32,
        }
    }

    /// [`Book::submit_checked`] for a book whose orders were never archived.
    pub fn submit(
        &mut self,
        ctx: &Context,
        request: OrderRequest,
        origin: Origin,
    ) -> Result<Submitted, SubmitError> {
        self.submit_checked(ctx, request, origin, |_| Ok(None))
    }

    /// Submit an order: the same client order id returns the first result
    /// (`archived` says which order an id that is not in the book went to,
    /// if any: the ledger's keys, read inside the transaction, so that an
    /// order archived meanwhile is seen); otherwise the risk engine checks it (a
    /// denial is recorded as a rejected order), and an accepted order
    /// executes at once in session or works from the next bar.
    pub fn submit_checked(
        &mut self,
        ctx: &Context,
        request: OrderRequest,
        origin: Origin,
        archived: impl Fn(&str) -> Result<Option<String>, String>,
    ) -> Result<Submitted, SubmitError> {
        validate(&request)?;
        if !self.client_ids.contains_key(&request.client_order_id)
            && let Some(order_id) =
                archived(&request.client_order_id).map_err(SubmitError::Unavailable)?
        {
            return Err(SubmitError::Archived {
                client_order_id: request.client_order_id,
                order_id,
            });
        }
        if let Some(id) = self.client_ids.get(&request.client_order_id) {
            let Some(record) = self.orders.get(id) else {
                return Err(SubmitError::Archived {
                    client_order_id: request.client_order_id,
                    order_id: id.clone(),
                });
            };
            if record.request != request {
                return Err(SubmitError::Conflict(request.client_order_id));
            }
            return match record.order.status {
                OrderStatus::Rejected => Err(SubmitError::Denied(Box::new(record.clone()))),
                _ => Ok(Submitted {
                    record: record.clone(),
                    replayed: true,
                }),
            };
        }
        let symbol = request.symbol.clone();
        let last = *ctx
            .market
            .last_bar(&symbol)
            .ok_or_else(|| SubmitError::NoPrice(symbol.clone()))?;
        let as_of = ctx.market.as_of.unwrap_or(last.date);
        let reference_price = match request.kind {
            OrderKind::Market => last.close,
            OrderKind::Limit { limit_price } => limit_price,
            OrderKind::Stop { stop_price } => stop_price,
        };
        // The clock moves on: first work what earlier orders have not seen.
        self.sync(ctx);
        let lot = lot_size(&symbol);
        let exposure = self.exposure(ctx, &symbol);
        let quantity = match request.quantity {
            Some(q) => q,
            None => {
                // The stop-distance rule, then no more than the position and
                // order limits leave room for: a sized order is never one the
                // risk engine is bound to refuse.
                let (stop, _) = risk::exits(&ctx.limits, reference_price, price_decimals(&symbol));
                let sized = risk::position_size(
                    &ctx.limits,
                    exposure.cash,
                    exposure.equity,
                    reference_price,
                    stop,
                    lot,
                );
                let held = Money::notional(reference_price, exposure.position.max(0) as u64)
                    .unwrap_or(Money::from_ticks(i64::MAX));
                let room =
                    (ctx.limits.max_position_value - held).min(ctx.limits.max_order_notional);
                let fits = (room.ticks().max(0) / reference_price.ticks().max(1)) as u64;
                sized.min(fits - fits % lot)
            }
        };
        let market = market_of(&symbol);
        let in_session = ctx.market.live && market.is_open(ctx.market.now);
        let intent = Intent {
            side: request.side,
            quantity,
            price: reference_price,
            lot_size: lot,
        };
        let verdict = if !in_session && ctx.session_policy == SessionPolicy::Reject {
            Err(Denial::MarketClosed)
        } else if request.quantity.is_none()
            && quantity == 0
            && exposure.state != TradingState::Halted
        {
            Err(Denial::NoSize)
        } else {
            risk::check(&ctx.limits, &intent, &exposure)
        };
        let id = self.next_id();
        let mut order = Order::new(
            id.clone(),
            request.client_order_id.clone(),
            symbol.clone(),
            request.side,
            request.kind,
            request.time_in_force,
            quantity,
        );
        let mut record = OrderRecord {
            order: order.clone(),
            origin,
            request: request.clone(),
            reference_price,
            submitted_at: ctx.market.now,
            as_of,
            works_from: None,
            denial: None,
            fills: Vec::new(),
            events: Vec::new(),
        };
        if let Err(denial) = verdict {
            let _ = order.apply(&OrderEvent::Reject {
                reason: denial.to_string(),
            });
            record.order = order;
            record.denial = Some(denial.clone());
            self.emit(Event::OrderPlaced {
                record: Box::new(record),
            });
            self.notify(Notice::Denied {
                order_id: id.clone(),
                symbol,
                denial,
            });
            return Err(SubmitError::Denied(Box::new(self.orders[&id].clone())));
        }
        let _ = order.apply(&OrderEvent::Accept);
        record.order = order;
        let works_from = market.next_trading_day(as_of);
        if in_session {
            self.emit(Event::OrderPlaced {
                record: Box::new(record),
            });
            let report = ctx.broker.execute_now(&self.orders[&id].order, &last, lot);
            self.apply_report(ctx, &id, as_of, report);
            if self.orders[&id].order.status.is_open() {
                self.emit(Event::OrderWorks {
                    order_id: id.clone(),
                    from: works_from,
                });
            }
        } else {
            record.works_from = Some(works_from);
            self.emit(Event::OrderPlaced {
                record: Box::new(record),
            });
        }
        if !self.processed.contains_key(&symbol) {
            self.emit(Event::Marked {
                symbol,
                date: as_of,
                close: None,
            });
        }
        Ok(Submitted {
            record: self.orders[&id].clone(),
            replayed: false,
        })
    }

    /// Finished orders beyond the newest `keep` finished ones: what may
    /// leave the book for the archive (oldest first).
    pub fn archivable(&self, keep: usize) -> Vec<&OrderRecord> {
        let finished: Vec<&OrderRecord> = self
            .orders
            .values()
            .filter(|r| r.order.status.is_terminal())
            .collect();
        let surplus = finished.len().saturating_sub(keep);
        finished.into_iter().take(surplus).collect()
    }

    /// Drop archived orders from the book (finished ones only; their client
    /// order ids stay, pointing at the archive).
    pub fn forget(&mut self, ids: &[String]) {
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| {
                self.orders
                    .get(*id)
                    .is_some_and(|r| r.order.status.is_terminal())
            })
            .cloned()
            .collect();
        if !ids.is_empty() {
            self.emit(Event::OrdersArchived { ids });
        }
    }

    /// Cancel a working order.
    pub fn cancel(&mut self, id: &str) -> Result<OrderRecord, CancelError> {
        let record = self.orders.get(id).ok_or(CancelError::NotFound)?;
        let mut order = record.order.clone();
        order
            .apply(&OrderEvent::Cancel)
            .map_err(CancelError::Order)?;
        self.emit(Event::OrderClosed {
            order_id: id.to_string(),
            expired: false,
        });
        Ok(self.orders[id].clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Order(crate::order::OrderError),
}

/// The broker without the participation cap: the system's exits are not
/// left half done.
fn uncapped(ctx: &Context) -> PaperBroker {
    let mut broker = ctx.broker.clone();
    broker.model.participation_bps = 10_000;
    broker
}

fn origin_label(origin: Origin) -> &'static str {
    match origin {
        Origin::Api => "api",
        Origin::Cycle => "cycle",
        Origin::StopLoss => "stop-loss",
        Origin::TakeProfit => "take-profit",
        Origin::KillSwitch => "kill-switch",
    }
}

fn validate(request: &OrderRequest) -> Result<(), SubmitError> {
    let invalid = |field, message: String| Err(SubmitError::Invalid { field, message });
    let id = &request.client_order_id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return invalid(
            "client_order_id",
            "client_order_id is 1 to 64 of A-Z a-z 0-9 - _ . :".into(),
        );
    }
    match Symbol::parse(&request.symbol) {
        Err(e) => return invalid("symbol", e.to_string()),
        // The book and the market view key by the canonical spelling.
        Ok(symbol) if symbol.as_str() != request.symbol => {
            return invalid(
                "symbol",
                format!("write the symbol as `{symbol}`, not `{}`", request.symbol),
            );
        }
        Ok(_) => {}
    }
    if request.quantity.is_some_and(|q| q == 0 || q > MAX_QUANTITY) {
        return invalid("quantity", format!("quantity is 1 to {MAX_QUANTITY}"));
    }
    if request.quantity.is_none() && request.side == Side::Sell {
        return invalid(
            "quantity",
            "a sell names its quantity (sizing applies to buys)".into(),
        );
    }
    let (field, price) = match request.kind {
        OrderKind::Market => ("limit_price", None),
        OrderKind::Limit { limit_price } => ("limit_price", Some(limit_price)),
        OrderKind::Stop { stop_price } => ("stop_price", Some(stop_price)),
    };
    if price.is_some_and(|p| p.ticks() <= 0) {
        return invalid(field, format!("{field} is positive"));
    }
    Ok(())
}

pub fn market_of(symbol: &str) -> Market {
    Symbol::parse(symbol).map_or(Market::Us, |s| s.market())
}

pub fn lot_size(symbol: &str) -> u64 {
    market_of(symbol).exchange().lot_size
}

/// The decimals `symbol`'s market quotes and fills in.
pub fn price_decimals(symbol: &str) -> u32 {
    market_of(symbol).price_decimals()
}

fn affordable_shares(broker: &PaperBroker, cash: Money, price: Price, lot: u64) -> u64 {
    if price.ticks() <= 0 || cash.ticks() <= 0 {
        return 0;
    }
    let mut shares = (cash.ticks() / price.ticks()) as u64;
    shares -= shares % lot;
    while shares > 0 {
        let notional = Money::notional(price, shares).unwrap_or(Money::from_ticks(i64::MAX));
        if notional + broker.model.commission(notional) <= cash {
            break;
        }
        shares -= lot;
    }
    shares
}
