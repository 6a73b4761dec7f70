//! The wire contract of the platform.
//!
//! `wit/` (package `daytrade:platform`) defines the records every service
//! exchanges; this crate is their Rust projection, serialised as JSON with
//! the field names of the WIT records in snake case (see `wit/README.md`).
//! Only the records the adapters already speak live here; the service
//! libraries add theirs as they fill in their APIs.

use serde::{Deserialize, Serialize};

/// The WIT package (and so the contract version) these types project.
pub const CONTRACT: &str = "daytrade:platform@0.1.0";

/// A service of the platform: its id (the same in spin.toml, Kubernetes,
/// Istio and metric labels) and the route prefix it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceId {
    pub id: &'static str,
    pub route_prefix: &'static str,
}

impl ServiceId {
    pub const DATA: Self = Self::new("data-service", "/api/v1/data");
    pub const SYMBOL: Self = Self::new("symbol-service", "/api/v1/symbols");
    pub const ML: Self = Self::new("ml-service", "/api/v1/ml");
    pub const EXECUTION: Self = Self::new("execution-service", "/api/v1/execution");
    pub const NOTIFICATION: Self = Self::new("notification-service", "/api/v1/notifications");

    /// Every service, in the order of the call graph (callees first).
    pub const ALL: [Self; 5] = [
        Self::DATA,
        Self::SYMBOL,
        Self::ML,
        Self::NOTIFICATION,
        Self::EXECUTION,
    ];

    const fn new(id: &'static str, route_prefix: &'static str) -> Self {
        Self { id, route_prefix }
    }

    /// The Spin variable holding this service's base URL, e.g. `data_service_url`.
    pub fn url_variable(&self) -> String {
        format!("{}_url", self.id.replace('-', "_"))
    }

    /// The path a request addresses below this service's own prefix (`/health`),
    /// from Spin's `spin-component-route` and `spin-path-info` headers, whichever
    /// way the request arrived.
    ///
    /// From outside, Spin matched the component's route (`/api/v1/data/...`):
    /// the component route is `/api/v1/data` and the path info what follows it.
    /// Chained through `http://<id>.spin.internal/api/v1/data/health`, Spin
    /// matches synthetically, as against the route `/...` (`RouteMatch::synthetic`
    /// in Spin's `routes` crate): the component route is empty and the path info
    /// is the whole path, from which this service's prefix is taken off. A path
    /// info that does not start with the prefix is served as it is, so the
    /// service also answers wherever a manifest mounts it.
    pub fn path_below(&self, component_route: &str, path_info: &str) -> String {
        let path_info = if path_info.is_empty() { "/" } else { path_info };
        if !component_route.trim_end_matches('/').is_empty() {
            return path_info.to_string();
        }
        match path_info.strip_prefix(self.route_prefix) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => path_info.to_string(),
        }
    }
}

/// WIT `types.error`: every error a client sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable, machine-readable, kebab-case code (`not-found`, `invalid-symbol`).
    pub code: String,
    /// For humans; may change between versions.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<(String, String)>>,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            details: None,
        }
    }
}

/// WIT `ml.action`: what a forecast advises, as ml-service sends it and
/// execution-service's cycle reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Buy,
    Sell,
    Hold,
}

/// WIT `types.health-report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub service: String,
    pub status: String,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
}

/// WIT `types.dependency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub service: String,
    pub status: String,
}

/// WIT `types.version-info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub service: String,
    pub version: String,
    pub contract: String,
}

/// A service's key-value store (Spin key-value: SQLite locally, Redis in a
/// cluster). Service libraries take it as a port; components implement it with
/// Spin (`spin_adapter::KvStore`), tests with an in-memory map.
pub trait Store {
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes; a failure is logged by the implementation, not returned.
    fn set(&self, key: &str, value: &[u8]);
    fn delete(&self, key: &str);
    fn keys(&self) -> Vec<String>;
}

impl<T: Store + ?Sized> Store for &T {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: &[u8]) {
        (**self).set(key, value)
    }
    fn delete(&self, key: &str) {
        (**self).delete(key)
    }
    fn keys(&self) -> Vec<String> {
        (**self).keys()
    }
}

pub mod auth;
#[cfg(any(test, feature = "wit-check"))]
pub mod wit_check;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_package_declares_the_contract_version() {
        let mut resolve = wit_parser::Resolve::default();
        let (pkg, _) = resolve
            .push_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit"))
            .expect("wit/ parses");
        assert_eq!(resolve.packages[pkg].name.to_string(), CONTRACT);
        let worlds: Vec<_> = resolve.packages[pkg].worlds.keys().cloned().collect();
        for service in ServiceId::ALL {
            assert!(
                worlds.contains(&service.id.to_string()),
                "no world for {}",
                service.id
            );
        }
    }

    fn assert_projects(value: impl Serialize, record: &str) {
        let value = serde_json::to_value(value).unwrap();
        wit_check::assert_projects(&value, "types", record);
    }

    #[test]
    fn json_projection_matches_wit_records() {
        let mut error = ApiError::new("not-found", "no such route");
        error.details = Some(vec![("path".into(), "/x".into())]);
        assert_projects(&error, "error");
        let dependency = Dependency {
            service: "data-service".into(),
            status: "ok".into(),
        };
        assert_projects(&dependency, "dependency");
        let health = Health {
            service: "symbol-service".into(),
            status: "ok".into(),
            dependencies: vec![dependency],
        };
        assert_projects(&health, "health-report");
        let version = Version {
            service: "data-service".into(),
            version: "0.1.0".into(),
            contract: CONTRACT.into(),
        };
        assert_projects(&version, "version-info");
    }

    #[test]
    fn path_below_the_prefix_for_direct_and_chained_requests() {
        let data = ServiceId::DATA;
        let cases = [
            // (spin-component-route, spin-path-info) → the service's path
            ("/api/v1/data", "/symbols", "/symbols"),
            ("/api/v1/data", "", "/"),
            ("/api/v1/data", "/", "/"),
            // Chained on Spin: matched as `/...`, the whole path as path info.
            ("", "/api/v1/data/symbols", "/symbols"),
            ("", "/api/v1/data", "/"),
            ("", "/api/v1/data/", "/"),
            ("", "/api/v1/data/stocks/7203.T", "/stocks/7203.T"),
            // Not this service's prefix: served as it is (a catch-all mount).
            ("", "/api/v1/database", "/api/v1/database"),
            ("", "/health", "/health"),
            // Mounted elsewhere: the path below that route, whatever it looks like.
            ("/data", "/api/v1/data/symbols", "/api/v1/data/symbols"),
        ];
        for (component_route, path_info, expected) in cases {
            assert_eq!(
                data.path_below(component_route, path_info),
                expected,
                "component route {component_route:?}, path info {path_info:?}"
            );
        }
    }

    #[test]
    fn url_variable_is_snake_case() {
        assert_eq!(ServiceId::DATA.url_variable(), "data_service_url");
    }
}
