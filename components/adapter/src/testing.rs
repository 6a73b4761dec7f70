//! For a component's own tests (run by `runtime-host test`): a request as
//! the host routes it, and a route's answer as status and JSON.

use spin_sdk::http::{Method, Request};

use crate::{Route, Service};

/// A request for `path` below `service`'s prefix, with the headers Spin
/// gives a routed request.
pub fn request(service: &Service, method: Method, path: &str, body: &[u8]) -> Request {
    let prefix = service.id.route_prefix;
    let full = format!("{prefix}{path}");
    Request::builder()
        .method(method)
        .uri(full.clone())
        .header("spin-full-url", format!("http://localhost{full}"))
        .header("spin-component-route", prefix)
        .header("spin-path-info", path.split('?').next().unwrap_or(path))
        .body(body.to_vec())
        .build()
}

/// A route's answer: its status and JSON body (an error as `{"code"}`).
pub fn answer(route: Route) -> (u16, serde_json::Value) {
    match route {
        Route::Json(status, body) => (status, body),
        Route::Error(status, e) => (status, serde_json::json!({ "code": e.code })),
        Route::NotFound => (404, serde_json::json!({ "code": "not-found" })),
        Route::Text(..) => (200, serde_json::Value::Null),
    }
}
