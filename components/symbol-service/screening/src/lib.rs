//! Screening of the symbol universe (liquidity, volatility, volume consistency, momentum) into scored recommendations.
//!
//! The domain library of `symbol-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `symbol-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.

use daytrade_contract::ServiceId;

/// This service.
pub const SERVICE: ServiceId = ServiceId::SYMBOL;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[ServiceId::DATA];
