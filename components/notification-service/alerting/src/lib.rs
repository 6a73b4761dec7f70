//! Alerts to Slack, webhooks and the log, with de-duplication and throttling.
//!
//! The domain library of `notification-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `notification-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.
//!
//! [`notification`] (what is sent, validated), [`slack`] (Block Kit payloads),
//! [`webhook`] (signed JSON bodies), [`delivery`] (retry decisions, de-duplication
//! and throttling windows, the delivery log's records and queries).

pub mod delivery;
pub mod notification;
pub mod slack;
pub mod webhook;

use daytrade_contract::ServiceId;

pub use delivery::{Attempt, Delivery, DeliveryStatus, Record, RetryPolicy};
pub use notification::{Channel, Notification, Severity};

/// This service.
pub const SERVICE: ServiceId = ServiceId::NOTIFICATION;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[];
