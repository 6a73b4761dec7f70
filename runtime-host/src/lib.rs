//! runtime-host: a wasmtime-based host that runs a Spin application
//! (`spin.toml`, manifest version 2) the way `spin up` does. It is what runs
//! this project's components in Kubernetes pods without the Spin shim.
//!
//! How the modules fit:
//! - [`manifest`] parses `spin.toml`; [`runtime_config`] the Spin-format
//!   runtime config; [`variables`] resolves application variables and the
//!   `{{ name }}` templates that use them.
//! - [`routes`] implements Spin's HTTP route semantics.
//! - [`engine`] builds the Wasmtime engine (pooling allocator, epoch
//!   interruption) and caches compiled components.
//! - [`app`] loads the components and calls one per request with its limits;
//!   [`state`] is what a request's `Store` holds.
//! - [`capabilities`] implements the Spin interfaces (variables, key-value,
//!   redis) over [`key_value`], and [`sqlite`]; [`http_outbound`] checks outbound HTTP against
//!   [`outbound`]'s allow-lists and serves `*.spin.internal` in-process.
//! - [`limits`] is what one client may cost: body size, header-read time,
//!   connections.
//! - [`server`] runs the listeners, the admin port and graceful shutdown;
//!   [`metrics`], [`trace`] and [`telemetry`] (logs, OTLP spans) are its
//!   observability.

pub mod app;
pub mod capabilities;
pub mod compose;
pub mod engine;
pub mod http_outbound;
pub mod key_value;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub mod mqtt;
pub mod outbound;
pub mod postgres;
pub mod routes;
pub mod runtime_config;
pub mod server;
pub mod sqlite;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod variables;

pub use app::{App, AppSettings};
pub use metrics::Metrics;
pub use server::{RunningHost, start};
