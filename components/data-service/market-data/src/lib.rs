//! Market data: bundled real history and live providers, the market clock, the bar cache and the indicators (SMA, EMA, MACD, RSI, Bollinger, ATR).
//!
//! The domain library of `data-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `data-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.

use daytrade_contract::ServiceId;

/// This service.
pub const SERVICE: ServiceId = ServiceId::DATA;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[];
