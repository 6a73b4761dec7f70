//! Screening of the symbol universe into scored recommendations.
//!
//! The domain library of `symbol-service`: plain Rust with no Spin
//! dependency. [`metrics`] measures each symbol's recent daily history;
//! [`filters`] is a chain modelled on freqtrade's pairlists (minimum
//! history, price, volume and turnover, a volatility band, a momentum
//! filter), each pass giving a reason; [`score`] ranks the survivors with
//! documented weights.

pub mod filters;
pub mod metrics;
pub mod score;

pub use filters::{FilterChain, Rejection};
pub use metrics::{Metrics, Series};
pub use score::{Recommendation, ScoreWeights, screen};

use daytrade_contract::ServiceId;

/// This service.
pub const SERVICE: ServiceId = ServiceId::SYMBOL;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[ServiceId::DATA];
