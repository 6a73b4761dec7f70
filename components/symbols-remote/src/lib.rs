//! `daytrade:platform/symbols` over HTTP: the component that satisfies a
//! typed `symbols` import when symbol-service runs in a pod of its own. Each
//! function is one request to symbol-service's route for it, at the
//! `symbol_service_url` variable, read back into the WIT types. It runs with
//! its importer's outbound hosts and variables
//! (`inherit_configuration = ["allowed_outbound_hosts", "variables"]`).

// The typed bindings expand to canonical-ABI code, which is unsafe.
#![allow(unsafe_code)]

use std::collections::BTreeMap;

use daytrade_contract::{ApiError, Health, Version};
use serde::Deserialize;
use spin_adapter::remote;

wit_bindgen::generate!({
    world: "symbol-service",
    path: "../../wit",
    with: {
        "daytrade:platform/types@0.1.0": daytrade_bindings::types,
    },
});

use daytrade_bindings::{interval_code, types as t, unreachable_health};
use exports::daytrade::platform::symbols as wit;

struct Remote;

export!(Remote);

/// symbol-service's route `path` (below `/api/v1/symbols`).
fn url(path: &str) -> Result<String, ApiError> {
    let base = remote::base("symbol_service_url")?;
    Ok(format!("{base}/api/v1/symbols{path}"))
}

#[derive(Deserialize)]
struct RecommendationJson {
    symbol: String,
    score: f64,
    /// The measures by name (WIT: a list of pairs, in name order).
    metrics: BTreeMap<String, f64>,
    reasons: Vec<String>,
}

#[derive(Deserialize)]
struct RecommendJson {
    recommendations: Vec<RecommendationJson>,
}

impl wit::Guest for Remote {
    fn recommend(
        limit: u32,
        interval: Option<t::Interval>,
    ) -> Result<Vec<wit::Recommendation>, t::Error> {
        let limit = limit.to_string();
        let path = format!(
            "/recommend{}",
            remote::query(&[
                ("limit", Some(&limit)),
                ("interval", interval.map(interval_code)),
            ])
        );
        let answer: RecommendJson =
            remote::get(url(&path).map_err(t::Error::from)?).map_err(t::Error::from)?;
        Ok(answer
            .recommendations
            .into_iter()
            .map(|r| wit::Recommendation {
                symbol: r.symbol,
                score: r.score,
                metrics: r.metrics.into_iter().collect(),
                reasons: r.reasons,
            })
            .collect())
    }

    fn health() -> t::HealthReport {
        url("/health")
            .and_then(remote::get::<Health>)
            .map_or_else(|e| unreachable_health("symbol-service", &e), Into::into)
    }

    fn version() -> t::VersionInfo {
        url("/version")
            .and_then(remote::get::<Version>)
            .unwrap_or_else(|e| Version {
                service: "symbol-service".into(),
                version: format!("unknown ({})", e.code),
                contract: String::new(),
            })
            .into()
    }
}
