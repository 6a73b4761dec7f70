//! The host's system tests, one binary: every module starts real hosts (as a
//! library or as the built binary) with real components, a real
//! `redis-server` and local HTTP servers. One binary links wasmtime once
//! instead of once per file, which is most of the test build's time and disk.

mod common;

mod capabilities;
mod data_service;
mod day_trading;
mod execution_service;
mod interfaces;
mod isolation;
mod limits;
mod mesh;
mod ml_service;
mod notification_service;
mod services;
mod symbol_service;
mod telemetry;
