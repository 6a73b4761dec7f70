//! For the HTTP adapters of the typed interfaces (`data-remote`): one
//! request to another service's route, and its JSON
//! answer decoded, or that service's error as it gave it.

use daytrade_contract::ApiError;
use serde::de::DeserializeOwned;
use spin_sdk::http::Request;

use crate::{Route, call_json};

/// The service's base URL, from the variable `name` (`data_service_url`).
pub fn base(name: &str) -> Result<String, ApiError> {
    spin_sdk::variables::get(name)
        .map(|url| url.trim_end_matches('/').to_string())
        .map_err(|e| ApiError::new("configuration", format!("variable `{name}`: {e}")))
}

/// Send `build(url)` for `url` and decode its 200 answer as `T`; an error
/// answer as the service gave it (see [`call_json`]).
pub fn call<T: DeserializeOwned>(
    url: String,
    build: impl FnOnce(String) -> Request,
) -> Result<T, ApiError> {
    let value =
        spin_sdk::http::run(call_json(build(url.clone()), &url)).map_err(|route| match route {
            Route::Error(_, e) => e,
            _ => ApiError::new("upstream-malformed", format!("{url}: no answer")),
        })?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::new("upstream-malformed", format!("{url}: {e}")))
}

pub fn get<T: DeserializeOwned>(url: String) -> Result<T, ApiError> {
    call(url, |url| Request::get(url).build())
}

pub fn post<T: DeserializeOwned>(url: String, body: &serde_json::Value) -> Result<T, ApiError> {
    call(url, |url| {
        Request::post(url, body.to_string())
            .header("content-type", "application/json")
            .build()
    })
}

/// `?name=value&...` of the values given, percent-encoded.
pub fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        query
    } else {
        format!("?{query}")
    }
}

/// A path segment percent-encoded (`^GSPC`, `EURUSD=X`).
pub fn segment(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
