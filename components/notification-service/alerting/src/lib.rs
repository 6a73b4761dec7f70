//! Alerts to Slack, webhooks and the log, with de-duplication and throttling.
//!
//! The domain library of `notification-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `notification-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.

use daytrade_contract::ServiceId;

/// This service.
pub const SERVICE: ServiceId = ServiceId::NOTIFICATION;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[];
