//! Paper trading: orders and their state machine, the paper broker, risk limits, the kill switch and the ledger.
//!
//! The domain library of `execution-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `execution-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.

use daytrade_contract::ServiceId;

/// This service.
pub const SERVICE: ServiceId = ServiceId::EXECUTION;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[ServiceId::DATA, ServiceId::NOTIFICATION];
