//! Direction forecasts from an ONNX ensemble, the model registry and accuracy monitoring on realised outcomes.
//!
//! The domain library of `ml-service`: plain Rust with no Spin dependency, so it
//! is tested natively with `cargo test`. The `ml-service` component crate beside
//! it adapts HTTP and Spin capabilities to this library.

use daytrade_contract::ServiceId;

/// This service.
pub const SERVICE: ServiceId = ServiceId::ML;

/// The services this one calls (over HTTP: service chaining locally, the mesh in a cluster).
pub const UPSTREAMS: &[ServiceId] = &[ServiceId::DATA];
