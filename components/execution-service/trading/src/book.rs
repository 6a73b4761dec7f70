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
use market_data::{Bar, Interval, Market, Price, Symbol};
use serde::{Deserialize, Serialize};

use crate::broker::{Execution, MarketBar, OrderGateway, PaperBroker, Report};
use crate::events::Event;
use crate::fx::{self, Currency, FxRates};
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
    /// The configured exchange rates (in the account's base currency);
    /// the clock's quotes of currency pairs the book has seen come first.
    pub fx: FxRates,
    pub broker: PaperBroker,
    pub session_policy: SessionPolicy,
    pub market: MarketView,
}

/// The market as data-service shows it at this moment.
#[derive(Debug, Clone, Default)]
pub struct MarketView {
    /// The market clock's date (its last complete trading day).
    pub as_of: Option<NaiveDate>,
    /// The market clock's instant: the decision time of what is submitted
    /// now. No bar closing after it is in `bars`.
    pub at: DateTime<Utc>,
    /// A live clock (the instant is now) or a replay.
    pub live: bool,
    /// Wall time, for the order-rate window.
    pub now: DateTime<Utc>,
    /// Bars per symbol, oldest first.
    pub bars: BTreeMap<String, Vec<Bar>>,
    /// The interval of a symbol's bars, when not daily.
    pub intervals: BTreeMap<String, Interval>,
}

impl MarketView {
    /// A replay clock at `at` whose date is `as_of`, seeing daily `bars`.
    pub fn replay(as_of: NaiveDate, at: DateTime<Utc>, bars: BTreeMap<String, Vec<Bar>>) -> Self {
        Self {
            as_of: Some(as_of),
            at,
            live: false,
            now: at,
            bars,
            intervals: BTreeMap::new(),
        }
    }

    fn last_bar(&self, symbol: &str) -> Option<&Bar> {
        self.bars.get(symbol).and_then(|b| b.last())
    }

    pub fn interval(&self, symbol: &str) -> Interval {
        self.intervals
            .get(symbol)
            .copied()
            .unwrap_or(Interval::OneDay)
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
    /// Flat by the close: the cutoff closing a position.
    FlatByClose,
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
    /// A bracket (buys): the position's exits once this entry fills,
    /// instead of the account's `stop_loss_bps` / `take_profit_bps`; the
    /// two are one-cancels-other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_loss: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub take_profit: Option<Price>,
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
        "trail_amount",
        "trail_bps",
        "time_in_force",
        "quantity",
        "stop_loss",
        "take_profit",
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
    /// The market clock's date when it was submitted.
    pub as_of: NaiveDate,
    /// The market clock's instant when it was decided: it trades only on
    /// bars opening at or after it (an `at-close` order: closing after it).
    pub works_from: DateTime<Utc>,
    /// The end of its trading day: what is left then expires (or is
    /// cancelled, IOC).
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<Denial>,
    /// An exit leg's bracket order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A bracket's legs as last modified (`request` keeps what was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legs: Option<Legs>,
    pub fills: Vec<FillRecord>,
    /// The sequence numbers of its events, oldest first (its history).
    #[serde(default)]
    pub events: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    /// The trading day of the bar it filled on.
    pub date: NaiveDate,
    /// When it filled: the bar's open, or its close for a closing auction.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub execution: Execution,
    /// The currency of its price and commission, and its rate: base
    /// units per unit of it at the fill.
    pub currency: Currency,
    pub rate: Price,
    /// Base cash converted to pay for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<fx::Conversion>,
}

/// A bracket's two exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Legs {
    pub stop_loss: Price,
    pub take_profit: Price,
}

impl OrderRecord {
    /// Its bracket's legs, as modified: none if it is not a bracket.
    pub fn bracket(&self) -> Option<Legs> {
        self.legs.or(
            match (
                self.request.side,
                self.request.stop_loss,
                self.request.take_profit,
            ) {
                (Side::Buy, Some(stop_loss), Some(take_profit)) => Some(Legs {
                    stop_loss,
                    take_profit,
                }),
                _ => None,
            },
        )
    }
}

/// Protective exits of a position: from its average entry price by the
/// account's rule, or a bracket order's own (one cancels the other).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exits {
    pub stop_loss: Price,
    pub take_profit: Price,
    /// The bracket order they came from (`None`: the account's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
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
    /// Equity and cash in the account's base currency (`currency`).
    pub equity: Money,
    pub cash: Money,
    #[serde(default)]
    pub currency: Currency,
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
    /// Per symbol, the instant its bars are worked through: a bar closing
    /// after it is new.
    pub processed: BTreeMap<String, DateTime<Utc>>,
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
    /// No exchange rate values the symbol's currency in the base currency.
    #[error(
        "no exchange rate for {currency} in {base}: quote the pair (e.g. {currency}{base}=X) or set `fx_rates`"
    )]
    NoFxRate { currency: Currency, base: Currency },
    #[error("the order was denied: {}", .0.denial.as_ref().map(ToString::to_string).unwrap_or_default())]
    Denied(Box<OrderRecord>),
    /// The order type or time in force is not one the symbol's market has.
    #[error("{0}")]
    Unsupported(String),
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
                "trail_amount" => "invalid-trail_amount",
                "trail_bps" => "invalid-trail_bps",
                "stop_loss" => "invalid-stop_loss",
                "take_profit" => "invalid-take_profit",
                _ => "invalid-order",
            },
            Self::Conflict(_) => "idempotency-conflict",
            Self::Unsupported(_) => "unsupported-order-type",
            Self::NoPrice(_) => "no-price",
            Self::NoFxRate { .. } => "no-fx-rate",
            Self::Denied(record) => record.denial.as_ref().map_or("denied", Denial::code),
            Self::Archived { .. } => "archived",
            Self::Unavailable(_) => "ledger-unavailable",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid { .. } | Self::Unsupported(_) => 400,
            Self::Conflict(_) => 409,
            Self::NoPrice(_) | Self::NoFxRate { .. } | Self::Denied(_) => 422,
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
    /// A new account in the default base currency (JPY): its first event
    /// opens it with `cash`.
    pub fn new(cash: Money) -> Self {
        Self::open(cash, Currency::JPY)
    }

    /// A new account whose base currency is `currency`.
    pub fn open(cash: Money, currency: Currency) -> Self {
        let mut book = Self::blank();
        book.emit(Event::Opened { cash, currency });
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

    /// The rates the account is valued at: the last closes of the
    /// currency pairs it has seen, then the `configured` ones (if in its
    /// base currency), then each currency's last fill's.
    pub fn rates(&self, configured: &FxRates) -> FxRates {
        let mut rates = if configured.base == self.portfolio.currency {
            self.portfolio.rates(configured)
        } else {
            self.portfolio.rates(&FxRates::new(self.portfolio.currency))
        };
        // Only currency pairs (`EURUSD=X`) rate anything: no parse for the rest.
        for (symbol, (_, close)) in self.marks.iter().filter(|(s, _)| s.ends_with("=X")) {
            if let Some((first, second)) = market_data::Symbol::parse(symbol)
                .ok()
                .as_ref()
                .and_then(market_data::Symbol::currency_pair)
                .and_then(|(a, b)| Some((Currency::parse(a).ok()?, Currency::parse(b).ok()?)))
            {
                rates.quote(first, second, *close);
            }
        }
        rates
    }

    /// Equity in the base currency, at the rates [`Book::rates`] gives.
    pub fn equity(&self, configured: &FxRates) -> Money {
        self.portfolio
            .equity(&self.marks(), &self.rates(configured))
    }

    pub fn daily_pnl(&self, configured: &FxRates) -> Money {
        self.pnl_since_day_start(self.equity(configured))
    }

    /// `equity` less the market day's starting equity.
    pub fn pnl_since_day_start(&self, equity: Money) -> Money {
        self.day_start
            .map_or(Money::ZERO, |(_, start)| equity - start)
    }

    /// Unrealised P&L in the base currency.
    pub fn unrealised_pnl(&self, configured: &FxRates) -> Money {
        self.portfolio
            .unrealised_pnl(&self.marks(), &self.rates(configured))
    }

    /// `price` of `symbol` per unit of quantity (a share, a contract) in
    /// the base currency, and the account's rate for its currency; or why
    /// an order in it cannot be checked (no rate, or a price beyond range).
    fn base_price(
        &self,
        configured: &FxRates,
        symbol: &str,
        price: Price,
    ) -> Result<(Price, Price), SubmitError> {
        let currency = Currency::of(symbol);
        self.rates(configured)
            .rate(currency)
            .and_then(|rate| Some((base_unit_price(symbol, price, rate)?, rate)))
            .ok_or(SubmitError::NoFxRate {
                currency,
                base: self.portfolio.currency,
            })
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

    /// Bring the book up to the market clock: every bar not yet worked, in
    /// time order across symbols, meets the working orders (those decided
    /// before it opened), the protective exits and the close cutoff; marks,
    /// the equity curve and the loss limits follow bar by bar (a limit that
    /// is hit switches trading to REDUCING at once).
    pub fn sync(&mut self, ctx: &Context) {
        // Each bar is worked at its open; a currency pair the book only
        // values currencies with is marked at its bar's close (`rate`), so
        // that a fill between sees the rate of its time, never a later one.
        let mut due: Vec<(DateTime<Utc>, &str, MarketBar, bool)> = Vec::new();
        for (symbol, bars) in &ctx.market.bars {
            let market = market_of(symbol);
            let interval = ctx.market.interval(symbol);
            // A symbol the book neither holds nor works: nothing of ours can
            // trade on its past bars, only its last close matters.
            let involved = self.portfolio.quantity(symbol) > 0
                || self.working_orders().any(|r| &r.order.symbol == symbol);
            let rate = !involved && market == Market::Fx;
            let seen = self.processed.get(symbol).copied();
            let Some(seen) = seen.filter(|_| involved || rate) else {
                if let Some(last) = bars.last() {
                    let bar = MarketBar::new(market, interval, *last);
                    self.mark(symbol, last.date, bar.closes_at(), Some(last.close));
                }
                continue;
            };
            // Oldest first: the new bars are a suffix (a bar opening at or
            // after `seen` closes after it; one opening before may too).
            let from = bars
                .partition_point(|b| b.ts < seen.timestamp())
                .saturating_sub(1);
            due.extend(
                bars[from..]
                    .iter()
                    .map(|b| MarketBar::new(market, interval, *b))
                    .filter(|b| b.closes_at() > seen)
                    .map(|b| {
                        let key = if rate { b.closes_at() } else { b.opens_at };
                        (key, symbol.as_str(), b, rate)
                    }),
            );
        }
        due.sort_by_key(|(key, symbol, _, _)| (*key, *symbol));
        let mut i = 0;
        while i < due.len() {
            let opens_at = due[i].0;
            self.end_sessions(opens_at);
            let mut date = None;
            while i < due.len() && due[i].0 == opens_at {
                let (_, symbol, bar, rate) = due[i];
                if !rate {
                    date = date.max(Some(bar.bar.date));
                    self.roll_day(ctx, bar.bar.date);
                    self.work_bar(ctx, symbol, &bar);
                }
                self.mark(symbol, bar.bar.date, bar.closes_at(), Some(bar.bar.close));
                i += 1;
            }
            // A new rate moves the equity too: the limits are checked on it;
            // the curve's point waits for the account's own next bar.
            if let Some(date) = date {
                self.record_equity(ctx, date);
            }
            self.check_loss_limits(ctx);
        }
        self.end_sessions(ctx.market.at);
        self.past_cutoff(ctx);
        if let Some(as_of) = ctx.market.as_of {
            self.roll_day(ctx, as_of);
            self.record_equity(ctx, as_of);
        }
    }

    /// Working orders whose trading day ended by `at` without a bar to
    /// finish them (the symbol did not trade, or its history ends) expire,
    /// or are cancelled if IOC.
    fn end_sessions(&mut self, at: DateTime<Utc>) {
        let ended: Vec<String> = self
            .working_orders()
            .filter(|r| r.expires_at <= at)
            .map(|r| r.order.id.clone())
            .collect();
        for id in ended {
            self.end_order(&id);
        }
    }

    /// The clock is past a market's entry cutoff (and before its close):
    /// the day's working entries there are cancelled (positions are closed
    /// on the bars, see [`Book::work_bar`]); tomorrow's at-open orders stay.
    fn past_cutoff(&mut self, ctx: &Context) {
        // Only the markets of working entries are asked (most syncs have none).
        let markets: std::collections::BTreeSet<Market> = self
            .working_orders()
            .filter(|r| is_entry(r))
            .map(|r| market_of(&r.order.symbol))
            .collect();
        let past: Vec<(Market, DateTime<Utc>)> = markets
            .into_iter()
            .filter_map(|m| Some((m, past_cutoff_of(&ctx.limits, m, ctx.market.at)?)))
            .collect();
        if !past.is_empty() {
            self.cancel_working(|r| {
                let market = market_of(&r.order.symbol);
                is_entry(r)
                    && past
                        .iter()
                        .any(|(m, close)| *m == market && r.expires_at <= *close)
            });
        }
    }

    /// A working order's session is over: a day or auction order expires,
    /// an IOC order is cancelled.
    fn end_order(&mut self, id: &str) {
        let expired = self.orders[id].order.time_in_force != TimeInForce::Ioc;
        self.emit(Event::OrderClosed {
            order_id: id.to_string(),
            expired,
        });
    }

    /// `symbol`'s bars are worked through `through` (and its mark is
    /// `close`, of trading day `date`): an event only when that says
    /// something new.
    fn mark(
        &mut self,
        symbol: &str,
        date: NaiveDate,
        through: DateTime<Utc>,
        close: Option<Price>,
    ) {
        let same_time = self.processed.get(symbol) == Some(&through);
        let same_mark = close.is_none_or(|c| self.marks.get(symbol) == Some(&(date, c)));
        if same_time && same_mark {
            return;
        }
        self.emit(Event::Marked {
            symbol: symbol.to_string(),
            date,
            through,
            close,
        });
    }

    /// A new market day starts from the equity at the last closes.
    fn roll_day(&mut self, ctx: &Context, date: NaiveDate) {
        if self.day_start.is_none_or(|(d, _)| d < date) {
            let equity = self.equity(&ctx.fx);
            self.emit(Event::DayStarted { date, equity });
        }
    }

    /// The equity curve's point for `date` (replacing one of the same date;
    /// the curve only moves forward).
    fn record_equity(&mut self, ctx: &Context, date: NaiveDate) {
        if self.equity_curve.last().is_some_and(|p| p.date > date) {
            return;
        }
        let rates = self.rates(&ctx.fx);
        let equity = self.portfolio.equity(&self.marks(), &rates);
        let previous = self
            .equity_curve
            .iter()
            .rev()
            .find(|p| p.date < date)
            .map_or(self.day_start.map_or(equity, |(_, s)| s), |p| p.equity);
        let point = EquityPoint {
            date,
            equity,
            cash: self.portfolio.cash_value(&rates),
            currency: self.portfolio.currency,
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
        let equity = self.equity(&ctx.fx);
        let daily = self.pnl_since_day_start(equity);
        let drawdown = risk::drawdown_bps(equity, self.peak_equity);
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

    /// One bar of `symbol`: past the close cutoff, entries are cancelled
    /// and the position sold at the open; then the working orders decided
    /// before the bar (at-close ones: before its close); then the
    /// protective exits over the bar's range; and on the day's last bar,
    /// when it spans the cutoff, what is still held is sold at the close
    /// (the closing auction).
    fn work_bar(&mut self, ctx: &Context, symbol: &str, bar: &MarketBar) {
        let market = market_of(symbol);
        let cutoff = ctx.limits.cutoff(market, bar.times.day_close);
        if cutoff.is_some_and(|c| bar.opens_at >= c) {
            let today = bar.times.day_close;
            self.cancel_working(|r| {
                r.order.symbol == symbol && is_entry(r) && r.expires_at <= today
            });
            self.flatten(ctx, symbol, bar, TimeInForce::Ioc, bar.opens_at);
        }
        let lot = lot_size(symbol);
        let working: Vec<String> = self
            .working_orders()
            .filter(|r| r.order.symbol == symbol && trades_on(r, bar))
            .map(|r| r.order.id.clone())
            .collect();
        for id in working {
            let record = &self.orders[&id];
            // The system's own sells, like the protective exits, are not
            // left half done by the participation cap.
            let report = if matches!(record.origin, Origin::KillSwitch | Origin::FlatByClose) {
                uncapped(ctx).execute_on_bar(&record.order, bar, lot)
            } else {
                ctx.broker.execute_on_bar(&record.order, bar, lot)
            };
            self.apply_report(ctx, &id, bar, report);
        }
        self.protective_exit(ctx, symbol, bar);
        if let Some(c) =
            cutoff.filter(|c| bar.times.ends_day && bar.opens_at < *c && *c < bar.closes_at())
        {
            self.flatten(ctx, symbol, bar, TimeInForce::AtClose, c);
        }
    }

    /// Sell all of `symbol` on `bar` for the close cutoff, decided at
    /// `decided`: at its open (IOC) or in its closing auction (at-close).
    fn flatten(
        &mut self,
        ctx: &Context,
        symbol: &str,
        bar: &MarketBar,
        how: TimeInForce,
        decided: DateTime<Utc>,
    ) {
        let held = self.portfolio.quantity(symbol);
        if held == 0 {
            return;
        }
        self.cancel_working(|r| r.order.symbol == symbol && r.order.side == Side::Sell);
        let reference = match how {
            TimeInForce::AtClose => bar.bar.close,
            _ => bar.bar.open,
        };
        let id = self.place_system_sell(
            ctx,
            SystemSell {
                symbol,
                origin: Origin::FlatByClose,
                kind: OrderKind::Market,
                time_in_force: how,
                quantity: held,
                reference,
                works_from: decided,
                expires_at: bar.times.day_close,
                parent: None,
            },
        );
        let report = uncapped(ctx).execute_on_bar(&self.orders[&id].order, bar, 1);
        self.apply_report(ctx, &id, bar, report);
    }

    fn protective_exit(&mut self, ctx: &Context, symbol: &str, bar: &MarketBar) {
        let held = self.portfolio.quantity(symbol);
        let Some(exits) = self.exits.get(symbol).cloned() else {
            return;
        };
        // Armed in every state: HALTED stops new orders, not the stops.
        if held == 0 {
            return;
        }
        // A bar that spans both: the stop is assumed first (the cautious
        // reading); either way one leg fills and the other is gone with
        // the position (one cancels the other).
        let (origin, kind, reference) = if bar.bar.low <= exits.stop_loss {
            (
                Origin::StopLoss,
                OrderKind::Stop {
                    stop_price: exits.stop_loss,
                },
                exits.stop_loss,
            )
        } else if bar.bar.high >= exits.take_profit {
            (
                Origin::TakeProfit,
                OrderKind::Limit {
                    limit_price: exits.take_profit,
                },
                exits.take_profit,
            )
        } else {
            return;
        };
        // The exit sells everything: working sells of the symbol are superseded.
        self.cancel_working(|r| r.order.symbol == symbol && r.order.side == Side::Sell);
        let id = self.place_system_sell(
            ctx,
            SystemSell {
                symbol,
                origin,
                kind,
                time_in_force: TimeInForce::Ioc,
                quantity: held,
                reference,
                works_from: bar.opens_at,
                expires_at: bar.times.day_close,
                parent: exits.order_id.clone(),
            },
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
        self.apply_report(ctx, &id, bar, report);
    }

    /// Place a sell the system decided (an exit); its id.
    fn place_system_sell(&mut self, ctx: &Context, sell: SystemSell<'_>) -> String {
        let id = self.next_id();
        let request = OrderRequest {
            client_order_id: format!("{}-{id}", origin_label(sell.origin)),
            symbol: sell.symbol.to_string(),
            side: Side::Sell,
            kind: sell.kind,
            time_in_force: sell.time_in_force,
            quantity: Some(sell.quantity),
            stop_loss: None,
            take_profit: None,
        };
        let mut order = Order::new(
            id.clone(),
            request.client_order_id.clone(),
            sell.symbol.to_string(),
            Side::Sell,
            sell.kind,
            sell.time_in_force,
            sell.quantity,
        );
        let _ = order.apply(&OrderEvent::Accept);
        self.emit(Event::OrderPlaced {
            record: Box::new(OrderRecord {
                order,
                origin: sell.origin,
                request,
                reference_price: sell.reference,
                submitted_at: ctx.market.now,
                as_of: ctx.market.as_of.unwrap_or(ctx.market.at.date_naive()),
                works_from: sell.works_from,
                expires_at: sell.expires_at,
                denial: None,
                parent: sell.parent,
                legs: None,
                fills: Vec::new(),
                events: Vec::new(),
            }),
        });
        id
    }

    /// Leaving ACTIVE: working entries (buys) are cancelled, so that REDUCING
    /// and HALTED only ever shrink positions; HALTED with `flatten` also
    /// cancels the working sells and sells every position at the next bar's
    /// open.
    fn on_leaving_active(&mut self, ctx: &Context, to: TradingState) {
        let flatten = to == TradingState::Halted && ctx.limits.on_halt == HaltPolicy::Flatten;
        self.cancel_working(|r| flatten || r.order.side == Side::Buy);
        if !flatten {
            return;
        }
        let held: Vec<(String, u64)> = self
            .portfolio
            .positions
            .iter()
            .map(|(symbol, p)| (symbol.clone(), p.quantity))
            .filter(|(_, q)| *q > 0)
            .collect();
        for (symbol, quantity) in held {
            let reference = self
                .marks
                .get(&symbol)
                .map_or(Price::from_ticks(0), |(_, p)| *p);
            self.place_system_sell(
                ctx,
                SystemSell {
                    symbol: &symbol,
                    origin: Origin::KillSwitch,
                    kind: OrderKind::Market,
                    time_in_force: TimeInForce::Ioc,
                    quantity,
                    reference,
                    works_from: ctx.market.at,
                    expires_at: day_end(market_of(&symbol), TimeInForce::Ioc, ctx.market.at),
                    parent: None,
                },
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
    /// cash cannot pay for is cut to what it can (whole lots); one in another
    /// currency than the base buys what that currency's cash lacks with base
    /// cash at the account's rate.
    fn apply_report(&mut self, ctx: &Context, id: &str, bar: &MarketBar, report: Report) {
        let lot = lot_size(&self.orders[id].order.symbol);
        let at = bar.meets_at(self.orders[id].order.time_in_force);
        let date = bar.bar.date;
        let currency = Currency::of(&self.orders[id].order.symbol);
        let rate = self.rates(&ctx.fx).rate(currency);
        for mut execution in report.executions {
            // Without a rate (its configuration is gone) nothing can pay.
            let Some(rate) = rate else { break };
            let (symbol, side, origin) = {
                let o = &self.orders[id];
                (o.order.symbol.clone(), o.order.side, o.origin)
            };
            if side == Side::Sell {
                execution.quantity = execution.quantity.min(self.portfolio.quantity(&symbol));
            }
            if side == Side::Buy {
                let affordable = affordable_shares(
                    &ctx.broker,
                    self.portfolio.buying_power(currency, rate),
                    unit_price(&symbol, execution.price),
                    lot,
                );
                if affordable < execution.quantity {
                    execution.quantity = affordable;
                    let notional =
                        notional(&symbol, execution.price, affordable).unwrap_or(Money::ZERO);
                    execution.commission = ctx.broker.model.commission(notional);
                }
            }
            if execution.quantity == 0 {
                continue;
            }
            let conversion = match side {
                Side::Buy => notional(&symbol, execution.price, execution.quantity)
                    .and_then(|n| n.checked_add(execution.commission))
                    .and_then(|cost| self.portfolio.conversion_for(currency, cost, rate)),
                Side::Sell => None,
            };
            let fill = Fill {
                side,
                quantity: execution.quantity,
                price: execution.price,
                commission: execution.commission,
                currency,
                rate,
                conversion,
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
                fill: FillRecord {
                    date,
                    at,
                    execution,
                    currency,
                    rate,
                    conversion,
                },
            });
            self.refresh_exits(ctx, &symbol, id);
            self.notify(Notice::Filled {
                order_id: id.to_string(),
                symbol,
                side,
                quantity: execution.quantity,
                price: execution.price,
                origin,
            });
        }
        let order = &self.orders[id].order;
        if order.status.is_open()
            && ((report.triggered && !order.triggered) || report.trail_stop.is_some())
        {
            self.emit(Event::OrderTriggered {
                order_id: id.to_string(),
                triggered: report.triggered || order.triggered,
                trail_stop: report.trail_stop.or(order.trail_stop),
            });
        }
        if report.done && self.orders[id].order.status.is_open() {
            self.end_order(id);
        }
    }

    /// A fill of order `id` changed the position of `symbol`: its exits are
    /// the bracket's if that order is one, stay a bracket's while the
    /// position lasts, and otherwise follow the average entry by the
    /// account's rule; none once the position is closed.
    fn refresh_exits(&mut self, ctx: &Context, symbol: &str, id: &str) {
        let bracket = self.orders[id].bracket().map(|legs| Exits {
            stop_loss: legs.stop_loss,
            take_profit: legs.take_profit,
            order_id: Some(id.to_string()),
        });
        let current = self.exits.get(symbol);
        let exits = self
            .portfolio
            .positions
            .get(symbol)
            .and_then(|p| p.entry_price(symbol))
            .map(|entry| {
                if let Some(bracket) = bracket {
                    return bracket;
                }
                if let Some(kept) = current.filter(|e| e.order_id.is_some()) {
                    return kept.clone();
                }
                let (stop_loss, take_profit) =
                    risk::exits(&ctx.limits, entry, price_decimals(symbol));
                Exits {
                    stop_loss,
                    take_profit,
                    order_id: None,
                }
            });
        if current != exits.as_ref() {
            self.emit(Event::ExitsSet {
                symbol: symbol.to_string(),
                exits,
            });
        }
    }

    /// The account as the risk engine must see it for `symbol`, working orders
    /// counted as filled at their reference price.
    pub fn exposure(&self, ctx: &Context, symbol: &str) -> Exposure {
        self.exposure_without(ctx, symbol, None)
    }

    /// [`Book::exposure`] as if the working order `excluded` were not there.
    fn exposure_without(&self, ctx: &Context, symbol: &str, excluded: Option<&str>) -> Exposure {
        let rates = self.rates(&ctx.fx);
        let in_base = |symbol: &str, amount: Money| {
            rates
                .rate(Currency::of(symbol))
                .and_then(|rate| fx::to_base(amount, rate))
                .unwrap_or(Money::from_ticks(i64::MAX / 4))
        };
        let mut position = i64::try_from(self.portfolio.quantity(symbol)).unwrap_or(i64::MAX);
        let mut reserved = Money::ZERO;
        let mut open: std::collections::BTreeSet<&str> = self
            .portfolio
            .positions
            .iter()
            .filter(|(_, p)| p.quantity > 0)
            .map(|(s, _)| s.as_str())
            .collect();
        for r in self
            .working_orders()
            .filter(|r| Some(r.order.id.as_str()) != excluded)
        {
            let remaining = r.order.remaining();
            if r.order.side == Side::Buy {
                let price = ctx.broker.model.slipped(
                    Side::Buy,
                    r.reference_price,
                    price_decimals(&r.order.symbol),
                );
                let notional = notional(&r.order.symbol, price, remaining).unwrap_or(Money::ZERO);
                reserved += in_base(
                    &r.order.symbol,
                    notional + ctx.broker.model.commission(notional),
                );
                open.insert(r.order.symbol.as_str());
            }
            if r.order.symbol == symbol {
                let q = i64::try_from(remaining).unwrap_or(i64::MAX);
                position = position.saturating_add(r.order.side.sign().saturating_mul(q));
            }
        }
        let window_start = ctx.market.now - chrono::Duration::seconds(60);
        // What can pay for `symbol`: its currency's cash and the base cash.
        let currency = Currency::of(symbol);
        let cash = self.portfolio.cash
            + if currency == self.portfolio.currency {
                Money::ZERO
            } else {
                in_base(symbol, self.portfolio.cash_in(currency))
            };
        let equity = self.portfolio.equity(&self.marks(), &rates);
        Exposure {
            state: self.state,
            position,
            open_positions: open.len(),
            cash: cash - reserved,
            daily_pnl: self.pnl_since_day_start(equity),
            equity,
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
        let market = market_of(&symbol);
        let last = *ctx
            .market
            .last_bar(&symbol)
            .ok_or_else(|| SubmitError::NoPrice(symbol.clone()))?;
        let as_of = ctx.market.as_of.unwrap_or(last.date);
        let decimals = price_decimals(&symbol);
        // A trailing stop starts its trail from the last close.
        let trail_stop = request.kind.trailed(request.side, last.close, decimals);
        let reference_price = reference_price(request.kind, last.close, trail_stop);
        // The clock moves on: first work what earlier orders have not seen.
        self.sync(ctx);
        // The risk engine sees prices in the base currency, per unit of
        // quantity (a share, a contract).
        let (base_reference, rate) = self.base_price(&ctx.fx, &symbol, reference_price)?;
        let lot = lot_size(&symbol);
        let exposure = self.exposure(ctx, &symbol);
        let quantity = match request.quantity {
            Some(q) => q,
            None => {
                // The stop-distance rule (a bracket's own stop, or the
                // account's), then no more than the position and order
                // limits leave room for: a sized order is never one the
                // risk engine is bound to refuse.
                let stop = request
                    .stop_loss
                    .unwrap_or_else(|| risk::exits(&ctx.limits, reference_price, decimals).0);
                let sized = risk::position_size(
                    &ctx.limits,
                    exposure.cash,
                    exposure.equity,
                    base_reference,
                    base_unit_price(&symbol, stop, rate).unwrap_or(base_reference),
                    lot,
                );
                let held = Money::notional(base_reference, exposure.position.max(0) as u64)
                    .unwrap_or(Money::from_ticks(i64::MAX));
                let room =
                    (ctx.limits.max_position_value - held).min(ctx.limits.max_order_notional);
                let fits = (room.ticks().max(0) / base_reference.ticks().max(1)) as u64;
                sized.min(fits - fits % lot)
            }
        };
        let at = ctx.market.at;
        let in_session = market.is_open(at);
        let past_cutoff = past_cutoff_of(&ctx.limits, market, at).is_some();
        let intent = Intent {
            side: request.side,
            quantity,
            price: base_reference,
            lot_size: lot,
        };
        let verdict = if !in_session && ctx.session_policy == SessionPolicy::Reject {
            Err(Denial::MarketClosed)
        } else if request.quantity.is_none()
            && quantity == 0
            && exposure.state != TradingState::Halted
        {
            Err(Denial::NoSize)
        } else if past_cutoff
            && request.side == Side::Buy
            && request.time_in_force != TimeInForce::AtOpen
            && exposure.state != TradingState::Halted
        {
            Err(Denial::AfterCutoff)
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
        order.trail_stop = trail_stop;
        let mut record = OrderRecord {
            order: order.clone(),
            origin,
            request: request.clone(),
            reference_price,
            submitted_at: ctx.market.now,
            as_of,
            works_from: at,
            expires_at: day_end(market, request.time_in_force, at),
            denial: None,
            parent: None,
            legs: None,
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
        // Accepted: it works from the next bar (no fill at a price the
        // decision has already seen).
        let _ = order.apply(&OrderEvent::Accept);
        record.order = order;
        self.emit(Event::OrderPlaced {
            record: Box::new(record),
        });
        if !self.processed.contains_key(&symbol) {
            self.emit(Event::Marked {
                symbol,
                date: as_of,
                through: at,
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

    /// Modify a working order in place (modify/replace): its quantity or
    /// the prices of its type. The new order is checked by the risk engine
    /// as if the old one were not there; denied, the old one stands.
    pub fn modify(
        &mut self,
        ctx: &Context,
        id: &str,
        change: &Modify,
    ) -> Result<OrderRecord, ModifyError> {
        let record = self.orders.get(id).ok_or(ModifyError::NotFound)?;
        if !matches!(record.origin, Origin::Api | Origin::Cycle) {
            return Err(ModifyError::NotWorking(id.to_string()));
        }
        let invalid = |field: &'static str, message: String| {
            ModifyError::Invalid(SubmitError::Invalid { field, message })
        };
        let legs = change.stop_loss.is_some() || change.take_profit.is_some();
        let symbol = record.order.symbol.clone();
        // A filled bracket's legs are the position's exits while it lasts.
        let armed = self
            .exits
            .get(&symbol)
            .is_some_and(|e| e.order_id.as_deref() == Some(id));
        if !record.order.status.is_open() {
            let legs_only = Modify {
                stop_loss: None,
                take_profit: None,
                ..change.clone()
            } == Modify::default();
            if !(legs && legs_only && armed) {
                return Err(ModifyError::NotWorking(id.to_string()));
            }
        }
        // The bracket's legs as they will be (none: not a bracket).
        let new_legs = record.bracket().map(|old| Legs {
            stop_loss: change.stop_loss.unwrap_or(old.stop_loss),
            take_profit: change.take_profit.unwrap_or(old.take_profit),
        });
        if legs && new_legs.is_none() {
            return Err(invalid(
                "stop_loss",
                "stop_loss and take_profit are a bracket's legs: this order is not a bracket"
                    .into(),
            ));
        }
        let with_legs = |request: &OrderRequest| OrderRequest {
            stop_loss: new_legs.map(|l| l.stop_loss),
            take_profit: new_legs.map(|l| l.take_profit),
            ..request.clone()
        };
        if let (Some(new_legs), false) = (new_legs.filter(|_| legs), record.order.status.is_open())
        {
            validate(&with_legs(&record.request)).map_err(ModifyError::Invalid)?;
            let modified = Event::OrderModified {
                order_id: id.to_string(),
                quantity: record.order.quantity,
                kind: record.order.kind,
                reference_price: record.reference_price,
                trail_stop: record.order.trail_stop,
                bracket: Some(new_legs),
            };
            self.emit(modified);
            self.set_bracket_exits(&symbol, id, new_legs);
            return Ok(self.orders[id].clone());
        }
        let mut kind = record.order.kind;
        let mismatch = |field: &'static str| {
            invalid(
                field,
                format!("`{field}` is not a field of this order's type"),
            )
        };
        if let Some(p) = change.limit_price {
            match &mut kind {
                OrderKind::Limit { limit_price } | OrderKind::StopLimit { limit_price, .. } => {
                    *limit_price = p
                }
                _ => return Err(mismatch("limit_price")),
            }
        }
        if let Some(p) = change.stop_price {
            match &mut kind {
                OrderKind::Stop { stop_price } | OrderKind::StopLimit { stop_price, .. } => {
                    *stop_price = p
                }
                _ => return Err(mismatch("stop_price")),
            }
        }
        if change.trail_amount.is_some() || change.trail_bps.is_some() {
            let OrderKind::TrailingStop { .. } = kind else {
                return Err(mismatch("trail_amount"));
            };
            kind = OrderKind::TrailingStop {
                trail_amount: change.trail_amount,
                trail_bps: change.trail_bps,
            };
        }
        let quantity = change.quantity.unwrap_or(record.order.quantity);
        let filled = record.order.filled_quantity;
        if quantity <= filled {
            return Err(invalid(
                "quantity",
                format!("quantity is more than the {filled} already filled"),
            ));
        }
        let checked = OrderRequest {
            kind,
            quantity: Some(quantity),
            ..with_legs(&record.request)
        };
        validate(&checked).map_err(ModifyError::Invalid)?;
        let decimals = price_decimals(&symbol);
        let last = self.marks.get(&symbol).map(|(_, p)| *p);
        let trail_stop = match (kind, last) {
            (OrderKind::TrailingStop { .. }, Some(last)) => {
                kind.trailed(record.order.side, last, decimals)
            }
            _ => record.order.trail_stop,
        };
        let reference_price = reference_price(kind, record.reference_price, trail_stop);
        // The account without the order, then the new order's remainder.
        let exposure = self.exposure_without(ctx, &symbol, Some(id));
        let (base_reference, _) = self
            .base_price(&ctx.fx, &symbol, reference_price)
            .map_err(ModifyError::Invalid)?;
        let intent = Intent {
            side: record.order.side,
            quantity: quantity - filled,
            price: base_reference,
            lot_size: lot_size(&symbol),
        };
        risk::check(&ctx.limits, &intent, &exposure).map_err(ModifyError::Denied)?;
        self.emit(Event::OrderModified {
            order_id: id.to_string(),
            quantity,
            kind,
            reference_price,
            trail_stop,
            bracket: new_legs.filter(|_| legs),
        });
        // Partly filled: the legs already guard what it bought.
        if let Some(new_legs) = new_legs.filter(|_| legs && armed) {
            self.set_bracket_exits(&symbol, id, new_legs);
        }
        Ok(self.orders[id].clone())
    }

    /// The position of `symbol` guarded by bracket `id`'s new legs.
    fn set_bracket_exits(&mut self, symbol: &str, id: &str, legs: Legs) {
        self.emit(Event::ExitsSet {
            symbol: symbol.to_string(),
            exits: Some(Exits {
                stop_loss: legs.stop_loss,
                take_profit: legs.take_profit,
                order_id: Some(id.to_string()),
            }),
        });
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

/// What a modification of a working order may change; what is absent stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modify {
    /// The new total quantity (at least what has filled).
    pub quantity: Option<u64>,
    pub limit_price: Option<Price>,
    pub stop_price: Option<Price>,
    pub trail_amount: Option<Price>,
    pub trail_bps: Option<i64>,
    /// A bracket's legs: while it works, and once filled while they guard
    /// its position (then nothing else may change).
    pub stop_loss: Option<Price>,
    pub take_profit: Option<Price>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModifyError {
    #[error("no such order")]
    NotFound,
    /// Finished, or one of the system's own exits.
    #[error("order {0} is not a working order of a caller")]
    NotWorking(String),
    #[error(transparent)]
    Invalid(SubmitError),
    /// The risk engine refused the new order: the old one stands.
    #[error("the modification was denied: {0}")]
    Denied(Denial),
}

impl ModifyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "order-not-found",
            Self::NotWorking(_) => "not-modifiable",
            Self::Invalid(e) => e.code(),
            Self::Denied(d) => d.code(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::NotWorking(_) => 409,
            Self::Invalid(e) => e.status(),
            Self::Denied(_) => 422,
        }
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
        Origin::FlatByClose => "flat-by-close",
    }
}

/// The price the risk engine checks an order of `kind` at: its limit, its
/// stop, a trailing stop's level, or `market` (the last close) for a
/// market order.
fn reference_price(kind: OrderKind, market: Price, trail_stop: Option<Price>) -> Price {
    match kind {
        OrderKind::Market => market,
        OrderKind::Limit { limit_price } | OrderKind::StopLimit { limit_price, .. } => limit_price,
        OrderKind::Stop { stop_price } => stop_price,
        OrderKind::TrailingStop { .. } => trail_stop.unwrap_or(market),
    }
}

/// The close of the trading day `at` is in, if `at` is past that day's
/// close cutoff (flat by the close); `None` otherwise or when holding
/// overnight.
fn past_cutoff_of(limits: &RiskLimits, market: Market, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let session = market.session_ending_after(at);
    let day_close = market.close_of(session.date).unwrap_or(session.close);
    let cutoff = limits.cutoff(market, day_close)?;
    (cutoff <= at).then_some(day_close)
}

/// A sell the system places (an exit).
struct SystemSell<'a> {
    symbol: &'a str,
    origin: Origin,
    kind: OrderKind,
    time_in_force: TimeInForce,
    quantity: u64,
    reference: Price,
    works_from: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    parent: Option<String>,
}

/// An order that opens or adds to a position (the book is long only).
fn is_entry(record: &OrderRecord) -> bool {
    record.order.side == Side::Buy
}

/// May the working order trade on `bar`? Only on a bar that opened at or
/// after its decision (an at-close order: one that closes after it).
fn trades_on(record: &OrderRecord, bar: &MarketBar) -> bool {
    let tif = record.order.time_in_force;
    let at = bar.meets_at(tif);
    if tif == TimeInForce::AtClose {
        at > record.works_from
    } else {
        at >= record.works_from
    }
}

/// The end of the trading day an order decided at `from` trades in: the
/// day of the next opening for an at-open order, the day whose session
/// ends after `from` otherwise.
pub fn day_end(market: Market, time_in_force: TimeInForce, from: DateTime<Utc>) -> DateTime<Utc> {
    let mut day = market.trading_day_at(from);
    if time_in_force == TimeInForce::AtOpen && market.session_open(day) < from {
        day = market.next_trading_day(day);
    }
    market
        .close_of(day)
        .unwrap_or_else(|| market.session_ending_after(from).close)
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
    let prices: &[(&'static str, Option<Price>)] = match request.kind {
        OrderKind::Market => &[],
        OrderKind::Limit { limit_price } => &[("limit_price", Some(limit_price))],
        OrderKind::Stop { stop_price } => &[("stop_price", Some(stop_price))],
        OrderKind::StopLimit {
            stop_price,
            limit_price,
        } => &[
            ("stop_price", Some(stop_price)),
            ("limit_price", Some(limit_price)),
        ],
        OrderKind::TrailingStop { trail_amount, .. } => &[("trail_amount", trail_amount)],
    };
    let bracket = [
        ("stop_loss", request.stop_loss),
        ("take_profit", request.take_profit),
    ];
    for (field, price) in prices.iter().chain(&bracket) {
        if price.is_some_and(|p| p.ticks() <= 0) {
            return invalid(field, format!("{field} is positive"));
        }
    }
    if let OrderKind::TrailingStop {
        trail_amount,
        trail_bps,
    } = request.kind
    {
        if trail_amount.is_some() == trail_bps.is_some() {
            return invalid(
                "trail_amount",
                "a trailing stop has one of trail_amount and trail_bps".into(),
            );
        }
        if trail_bps.is_some_and(|b| !(1..10_000).contains(&b)) {
            return invalid("trail_bps", "trail_bps is 1 to 9999".into());
        }
    }
    match (request.stop_loss, request.take_profit) {
        (None, None) => {}
        (Some(stop), Some(take)) if request.side == Side::Buy => {
            if stop >= take {
                return invalid(
                    "stop_loss",
                    "a bracket's stop_loss is below its take_profit".into(),
                );
            }
        }
        _ => {
            return invalid(
                "stop_loss",
                "a bracket is a buy with both stop_loss and take_profit".into(),
            );
        }
    }
    let market = market_of(&request.symbol);
    if request.time_in_force.is_auction() {
        if !market.has_auctions() {
            return Err(SubmitError::Unsupported(format!(
                "{} has no opening or closing auction: at-open and at-close orders are for tse and us",
                market.code()
            )));
        }
        if !matches!(request.kind, OrderKind::Market | OrderKind::Limit { .. }) {
            return Err(SubmitError::Unsupported(
                "at-open and at-close orders are market or limit orders".into(),
            ));
        }
    }
    Ok(())
}

pub fn market_of(symbol: &str) -> Market {
    Symbol::parse(symbol).map_or(Market::Us, |s| s.market())
}

pub fn lot_size(symbol: &str) -> u64 {
    market_of(symbol).exchange().lot_size
}

/// What one unit of `symbol`'s quantity is: a share (1) or a crypto
/// contract (0.0001 coin); its prices are per share or coin.
pub fn contract_size(symbol: &str) -> Price {
    market_of(symbol).contract_size()
}

/// `quantity` of `symbol` at `price` (per share or coin): its notional.
pub fn notional(symbol: &str, price: Price, quantity: u64) -> Option<Money> {
    Money::notional_of(price, quantity, contract_size(symbol))
}

/// The price of one unit of `symbol`'s quantity (a contract's, a share's).
pub fn unit_price(symbol: &str, price: Price) -> Price {
    fx::price_to_base(price, contract_size(symbol)).unwrap_or(Price::from_ticks(i64::MAX))
}

/// [`unit_price`] in the base currency at `rate`; `None` beyond a price.
fn base_unit_price(symbol: &str, price: Price, rate: Price) -> Option<Price> {
    fx::price_to_base(price, rate).map(|p| unit_price(symbol, p))
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
