//! Market data: bundled real history and live providers, the market clock,
//! the bar cache and the indicators (SMA, EMA, MACD, RSI, Bollinger, ATR).
//!
//! The domain library of `data-service`: plain Rust with no Spin dependency,
//! so it is tested natively with `cargo test`. The `data-service` component
//! crate beside it adapts HTTP and Spin capabilities to this library.
//!
//! - [`symbol`] parses tickers; [`exchange`] and [`calendar`] say when each
//!   market trades and in what lots.
//! - [`price`] is fixed-point; [`bar`] is one OHLCV bar; [`history`] reads the
//!   bundled real history.
//! - [`indicators`] computes the technical indicators; [`features`] the
//!   model's feature vector from them.
//! - [`clock`] is the market clock (live or replay); [`source`] builds
//!   provider requests and parses their answers.

pub mod bar;
pub mod calendar;
pub mod clock;
pub mod error;
pub mod exchange;
pub mod features;
pub mod history;
pub mod import;
pub mod indicators;
pub mod interval;
pub mod intraday;
pub mod price;
pub mod service;
pub mod source;
pub mod symbol;

pub use bar::Bar;
pub use clock::MarketClock;
pub use error::DataError;
pub use exchange::{BarTimes, Exchange, Market};
pub use history::History;
pub use interval::Interval;
pub use price::{Price, Rounding};
pub use symbol::Symbol;

use daytrade_contract::ServiceId;

/// This service.
pub const SERVICE: ServiceId = ServiceId::DATA;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[];
