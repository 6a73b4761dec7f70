//! `daytrade:platform/types` generated once from `wit/`, so that every
//! component's bindings share the same Rust types (each names this crate in
//! its `generate!`'s `with`), and the conversions between them and the
//! libraries' own types, written once.

// The generated bindings are canonical-ABI code, which is unsafe.
#![allow(unsafe_code)]

use daytrade_contract::{ApiError, Health, Version};
use market_data::{Interval, Market};

wit_bindgen::generate!({
    world: "shared",
    path: "../../wit",
    pub_export_macro: true,
});

pub use daytrade::platform::types;
use types as t;

impl From<Interval> for t::Interval {
    fn from(i: Interval) -> Self {
        match i {
            Interval::OneMinute => Self::OneMinute,
            Interval::FiveMinutes => Self::FiveMinutes,
            Interval::FifteenMinutes => Self::FifteenMinutes,
            Interval::OneHour => Self::OneHour,
            Interval::OneDay => Self::OneDay,
        }
    }
}

impl From<t::Interval> for Interval {
    fn from(i: t::Interval) -> Self {
        match i {
            t::Interval::OneMinute => Self::OneMinute,
            t::Interval::FiveMinutes => Self::FiveMinutes,
            t::Interval::FifteenMinutes => Self::FifteenMinutes,
            t::Interval::OneHour => Self::OneHour,
            t::Interval::OneDay => Self::OneDay,
        }
    }
}

impl From<Market> for t::Market {
    fn from(m: Market) -> Self {
        match m {
            Market::Tse => Self::Tse,
            Market::Us => Self::Us,
            Market::Fx => Self::Fx,
            Market::Crypto => Self::Crypto,
        }
    }
}

/// The JSON projection's code of an interval (`1d`).
pub fn interval_code(i: t::Interval) -> &'static str {
    Interval::from(i).as_str()
}

impl From<market_data::indicators::IndicatorSet> for t::IndicatorSet {
    fn from(i: market_data::indicators::IndicatorSet) -> Self {
        Self {
            sma_20: i.sma_20,
            ema_12: i.ema_12,
            ema_26: i.ema_26,
            macd: i.macd,
            macd_signal: i.macd_signal,
            macd_histogram: i.macd_histogram,
            rsi_14: i.rsi_14,
            bollinger_upper: i.bollinger_upper,
            bollinger_middle: i.bollinger_middle,
            bollinger_lower: i.bollinger_lower,
            bollinger_percent_b: i.bollinger_percent_b,
            atr_14: i.atr_14,
        }
    }
}

impl From<ApiError> for t::Error {
    fn from(e: ApiError) -> Self {
        Self {
            code: e.code,
            message: e.message,
            details: None,
        }
    }
}

impl From<Health> for t::HealthReport {
    fn from(h: Health) -> Self {
        Self {
            service: h.service,
            status: h.status,
            dependencies: h
                .dependencies
                .into_iter()
                .map(|d| t::Dependency {
                    service: d.service,
                    status: d.status,
                })
                .collect(),
        }
    }
}

impl From<Version> for t::VersionInfo {
    fn from(v: Version) -> Self {
        Self {
            service: v.service,
            version: v.version,
            contract: v.contract,
        }
    }
}

/// What a component answers for `health` when the service behind an HTTP
/// adapter does not answer: its status is the error.
pub fn unreachable_health(service: &str, e: &ApiError) -> t::HealthReport {
    t::HealthReport {
        service: service.to_string(),
        status: format!("{}: {}", e.code, e.message),
        dependencies: Vec::new(),
    }
}
