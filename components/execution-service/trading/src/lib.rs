//! Paper trading: orders and their state machine, the paper broker, risk limits, the kill switch and the ledger.
//!
//! The domain library of `execution-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `execution-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.
//!
//! [`money`] (fixed-point amounts), [`order`] (orders and their state
//! machine), [`portfolio`] (cash, positions, P&L), [`risk`] (limits, denials,
//! position sizing, automatic exits), [`broker`] (the order gateway and the
//! paper broker's fill model), [`book`] (one account and its operations),
//! [`events`] (what happens to an account: the book is their fold) and
//! [`ledger`] (the book in a store, changed by compare-and-swap transactions,
//! and its events, each stored once).

pub mod book;
pub mod broker;
pub mod config;
pub mod cycle;
pub mod events;
pub mod fx;
pub mod ledger;
pub mod money;
pub mod notices;
pub mod order;
pub mod portfolio;
pub mod risk;

use daytrade_contract::ServiceId;

pub use book::{Book, Context, MarketView, OrderRequest, Origin, SessionPolicy, SubmitError};
pub use broker::{FillModel, MarketBar, OrderGateway, PaperBroker};
pub use config::Config;
pub use events::Event;
pub use fx::{Conversion, Currency, FxRates};
pub use ledger::{CasStore, Ledger, LedgerError};
pub use money::Money;
pub use order::{Order, OrderError, OrderEvent, OrderKind, OrderStatus, Side, TimeInForce};
pub use portfolio::{Fill, Portfolio, Position};
pub use risk::{CloseCutoff, Denial, Exposure, HaltPolicy, Intent, RiskLimits, TradingState};

/// This service.
pub const SERVICE: ServiceId = ServiceId::EXECUTION;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[
    ServiceId::DATA,
    ServiceId::SYMBOL,
    ServiceId::ML,
    ServiceId::NOTIFICATION,
];
