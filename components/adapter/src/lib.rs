//! The thin layer between Spin's HTTP trigger and a service library.
//!
//! Every service component is `#[http_component] async fn handle(req) ->
//! Response { spin_adapter::serve(&SERVICE, req, route).await }`: this crate
//! answers the routes every service has (`health`, `version`), turns the
//! service's [`Route`] into a response in one place, and gives JSON errors
//! with stable codes for everything else.
//!
//! Routes are matched on the path below the service's own prefix, taken
//! from Spin's `spin-component-route` and `spin-path-info` headers so that
//! a request from outside and one chained through `<id>.spin.internal`
//! (which Spin matches as if against `/...`) reach the same route
//! ([`ServiceId::path_below`]).

pub mod remote;
pub mod testing;

pub use daytrade_contract::auth::{Principal, Role};

use daytrade_contract::auth::{AuthError, Authenticator};
use daytrade_contract::{ApiError, CONTRACT, Dependency, Health, ServiceId, Store, Version};
use serde::Serialize;
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::key_value;

/// A component: its identity, its version and the services it calls.
#[derive(Debug)]
pub struct Service {
    pub id: ServiceId,
    pub version: &'static str,
    /// Services this one calls; `GET health?deep=true` checks each of them.
    pub upstreams: &'static [ServiceId],
    /// Checks the service's configuration (its variables): `GET health`
    /// reports `degraded` with the reason while it fails, so a readiness
    /// probe keeps a misconfigured instance out of service.
    pub check_config: Option<fn() -> Result<(), String>>,
}

/// What a service's own router returns for a request.
#[derive(Debug)]
pub enum Route {
    /// A JSON body with a status.
    Json(u16, serde_json::Value),
    /// A 200 text body of a given content type (e.g. Prometheus metrics).
    Text(&'static str, String),
    /// A caller's mistake or our failure, as a stable error.
    Error(u16, ApiError),
    /// No route of this service matches the path.
    NotFound,
}

impl Route {
    pub fn ok(body: impl Serialize) -> Self {
        match serde_json::to_value(body) {
            Ok(value) => Self::Json(200, value),
            Err(e) => Self::Error(
                500,
                ApiError::new("internal", format!("failed to encode: {e}")),
            ),
        }
    }

    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::Error(status, ApiError::new(code, message))
    }
}

/// The path below the service's prefix (`/symbols`), for a request from
/// outside or a chained one alike.
pub fn path_info(service: &Service, req: &Request) -> String {
    let header = |name| req.header(name).and_then(|v| v.as_str()).unwrap_or("");
    service
        .id
        .path_below(header("spin-component-route"), header("spin-path-info"))
}

/// A route's query parameters: only the ones the route takes, each at most
/// once, percent-decoded. Anything else is the caller's mistake, refused
/// before the route runs rather than ignored.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// The request's query for a route that takes the parameters `accepted`:
    /// a parameter it does not take is 400 `unknown-parameter`, one given
    /// twice is 400 `invalid-<name>`.
    pub fn of(req: &Request, accepted: &[&str]) -> Result<Self, Route> {
        Self::parse(req.query(), accepted)
    }

    /// The query of a route that takes no parameters (see [`Query::of`]).
    pub fn none(req: &Request) -> Result<(), Route> {
        Self::of(req, &[]).map(|_| ())
    }

    fn parse(query: &str, accepted: &[&str]) -> Result<Self, Route> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if !accepted.contains(&name.as_ref()) {
                let takes = if accepted.is_empty() {
                    "this route takes no parameters".to_string()
                } else {
                    format!("this route takes {}", accepted.join(", "))
                };
                return Err(Route::error(
                    400,
                    "unknown-parameter",
                    format!("unknown query parameter `{name}`: {takes}"),
                ));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(Route::error(
                    400,
                    &format!("invalid-{name}"),
                    format!("`{name}` is given more than once"),
                ));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self { pairs })
    }

    /// A parameter's value, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A yes/no flag: `true` or `1`, `false` or `0`, absent is `false`; any
    /// other value is 400 `invalid-<name>`, never read as `false`.
    pub fn flag(&self, name: &str) -> Result<bool, Route> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(other) => Err(Route::error(
                400,
                &format!("invalid-{name}"),
                format!("`{name}` is `true` or `false`, got `{other}`"),
            )),
        }
    }
}

/// A JSON request body as `T`, refused with a code naming what is wrong: a
/// body that is not JSON (or not the JSON shape `T` is) is 400
/// `invalid-json`; a field `T` does not have is 400 `unknown-field`; a field
/// that is missing or whose value does not fit is 400 `invalid-<field>`, the
/// field's path from the top (`invalid-weights.momentum`; array positions
/// are in the message, not the code).
pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Route> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| body_error(&e))?;
    de.end()
        .map_err(|e| Route::error(400, "invalid-json", e.to_string()))?;
    Ok(parsed)
}

/// A JSON value already parsed from a body as `T`, refused as [`json_body`] does.
pub fn json_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Route> {
    serde_path_to_error::deserialize(value).map_err(|e| body_error(&e))
}

fn body_error(e: &serde_path_to_error::Error<serde_json::Error>) -> Route {
    use serde_path_to_error::Segment;
    let inner = e.inner();
    let message = inner.to_string();
    if !inner.is_data() {
        return Route::error(400, "invalid-json", message);
    }
    if message.starts_with("unknown field") {
        return Route::error(400, "unknown-field", message);
    }
    let mut field: Vec<String> = e
        .path()
        .iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Seq { .. } | Segment::Unknown => None,
        })
        .collect();
    // serde names a missing field in its message, at its parent's path.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        field.push(missing.to_string());
        let field = field.join(".");
        return Route::error(
            400,
            &format!("invalid-{field}"),
            format!("`{field}` is required"),
        );
    }
    if field.is_empty() {
        return Route::error(400, "invalid-json", message);
    }
    Route::error(
        400,
        &format!("invalid-{}", field.join(".")),
        format!("`{}`: {message}", e.path()),
    )
}

/// Serve one request: common routes first, then the service's router.
pub async fn serve<F, Fut>(service: &Service, req: Request, route: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Route>,
{
    let path = path_info(service, &req);
    let outcome = match (req.method(), path.as_str()) {
        (Method::Get, "/health") => match Query::of(&req, &["deep"]).and_then(|q| q.flag("deep")) {
            Ok(deep) => Route::ok(health(service, deep).await),
            Err(bad) => bad,
        },
        (Method::Get, "/version") => match Query::none(&req) {
            Ok(()) => Route::ok(version(service)),
            Err(bad) => bad,
        },
        _ => route(req).await,
    };
    respond(outcome, &path)
}

fn respond(outcome: Route, path: &str) -> Response {
    match outcome {
        Route::Json(status, body) => json(status, &body),
        Route::Text(content_type, body) => Response::builder()
            .status(200)
            .header("content-type", content_type)
            .body(body)
            .build(),
        Route::Error(status, error) if store_unavailable(status, &error) => {
            // The host's key-value store did not answer in time (Redis down or
            // restarting): the caller may retry, and nothing was half done.
            let mut response = json(
                503,
                &ApiError::new(
                    "store-unavailable",
                    "the data store is unavailable; retry shortly",
                ),
            );
            response.set_header("retry-after", "1");
            response
        }
        Route::Error(status, error) => json(status, &error),
        Route::NotFound => json(
            404,
            &ApiError::new("not-found", format!("no route for `{path}`")),
        ),
    }
}

/// The status of another service's error met through a typed call (a WIT
/// `error` carries a code and no status), as this service answers it: a
/// caller's mistake stays a 4xx (`invalid-*`, `unsupported-*` and
/// `clock-outside-session` 400, `unknown-*` 404, `not-enough-history` 422), the
/// store's outage a 503, the deployment's own mistake (`configuration`,
/// `corrupt-*`) a 500, anything else a bad gateway.
pub fn typed_status(code: &str) -> u16 {
    if code.starts_with("invalid-")
        || code.starts_with("unsupported-")
        || code == "clock-outside-session"
    {
        400
    } else if code.starts_with("unknown-") {
        404
    } else if code == "not-enough-history" {
        422
    } else if code == "store-unavailable" {
        503
    } else if code == "configuration" || code.starts_with("corrupt-") {
        500
    } else {
        502
    }
}

/// A typed call's error (`code`, `message`) as this service's answer.
pub fn typed_error(code: &str, message: impl Into<String>) -> Route {
    Route::error(typed_status(code), code, message)
}

/// Whether an error comes from a key-value store that did not answer: the
/// host reports that as `store-unavailable: ...` (its `KvError::Unavailable`),
/// whatever route or library carried it up; an upstream service reports it
/// as a 503 `store-unavailable`.
pub fn store_unavailable(status: u16, error: &ApiError) -> bool {
    error.message.contains("store-unavailable:")
        || (status == 503 && error.code == "store-unavailable")
}

/// A JSON response.
pub fn json(status: u16, body: &impl Serialize) -> Response {
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .build()
}

/// The base URL of another service: the Spin variable `<id>_url`
/// (`http://<id>.spin.internal` for local service chaining, a cluster URL in Kubernetes).
pub fn upstream_url(upstream: &ServiceId) -> anyhow::Result<String> {
    let name = upstream.url_variable();
    spin_sdk::variables::get(&name)
        .map(|url| url.trim_end_matches('/').to_string())
        .map_err(|e| anyhow::anyhow!("failed to read variable `{name}`: {e}"))
}

/// The service's `GET /version` answer (WIT `version-info`).
pub fn version(service: &Service) -> Version {
    Version {
        service: service.id.id.to_string(),
        version: service.version.to_string(),
        contract: CONTRACT.to_string(),
    }
}

/// The service's `GET /health` answer (WIT `health-report`): with `deep`,
/// each upstream asked in turn.
pub async fn health(service: &Service, deep: bool) -> Health {
    let mut dependencies = Vec::new();
    if let Some(check) = service.check_config {
        dependencies.push(Dependency {
            service: "configuration".to_string(),
            status: match check() {
                Ok(()) => "ok".to_string(),
                Err(e) => e,
            },
        });
    }
    if deep {
        for upstream in service.upstreams {
            dependencies.push(Dependency {
                service: upstream.id.to_string(),
                status: probe(upstream).await,
            });
        }
    }
    let status = if dependencies.iter().all(|d| d.status == "ok") {
        "ok"
    } else {
        "degraded"
    };
    Health {
        service: service.id.id.to_string(),
        status: status.to_string(),
        dependencies,
    }
}

/// `ok`, or why the upstream's health route did not answer 200.
async fn probe(upstream: &ServiceId) -> String {
    let url = match upstream_url(upstream) {
        Ok(base) => format!("{base}{}/health", upstream.route_prefix),
        Err(e) => return e.to_string(),
    };
    match spin_sdk::http::send::<_, Response>(Request::get(url).build()).await {
        Ok(resp) if *resp.status() == 200 => "ok".to_string(),
        Ok(resp) => format!("http {}", resp.status()),
        Err(e) => format!("unreachable: {e}"),
    }
}

/// Spin's `default` key-value store as the services' [`Store`] port.
pub struct KvStore {
    store: key_value::Store,
    /// Who is writing, for the log line when a write fails.
    owner: &'static str,
}

impl KvStore {
    pub fn open_default(owner: &'static str) -> Result<Self, Route> {
        key_value::Store::open_default()
            .map(|store| Self { store, owner })
            .map_err(|e| match e {
                // Not granted (`key_value_stores`, or a dependency that does
                // not inherit it): the deployment's mistake, not an outage.
                key_value::Error::AccessDenied | key_value::Error::NoSuchStore => Route::error(
                    500,
                    "configuration",
                    format!("{owner}: key-value store `default`: {e}"),
                ),
                e => Route::error(500, "store-unavailable", e.to_string()),
            })
    }
}

impl Store for KvStore {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.store.get(key).ok().flatten()
    }
    fn set(&self, key: &str, value: &[u8]) {
        if let Err(e) = self.store.set(key, value) {
            eprintln!("{}: failed to write {key}: {e}", self.owner);
        }
    }
    fn delete(&self, key: &str) {
        if let Err(e) = self.store.delete(key) {
            eprintln!("{}: failed to delete {key}: {e}", self.owner);
        }
    }
    fn keys(&self) -> Vec<String> {
        self.store.get_keys().unwrap_or_default()
    }
}

/// Check the caller's credentials for `need` (see [`daytrade_contract::auth`]):
/// the component's `api_keys` (`role:sha256-hex,...`), `jwt_secret` and
/// identity-provider (`jwt_jwks`, `jwt_issuer`, `jwt_audience`) variables say
/// who exists. 401 without valid credentials, 403 with too
/// small a role; the handler runs only on `Ok`.
pub fn authorize(req: &Request, need: Role) -> Result<Principal, Route> {
    let refuse = |e: AuthError| Route::error(e.status(), e.code(), e.to_string());
    let auth = authenticator().map_err(refuse)?;
    let bearer = req
        .header("authorization")
        .and_then(|v| v.as_str())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
    let credential = bearer.or_else(|| req.header("x-api-key").and_then(|v| v.as_str()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    auth.authorize(credential, need, now).map_err(refuse)
}

/// The credentials the component's variables configure.
fn authenticator() -> Result<Authenticator, AuthError> {
    let var = |name: &str| spin_sdk::variables::get(name).unwrap_or_default();
    Authenticator::from_config(&var("api_keys"), &var("jwt_secret"))?.with_issuer(
        &var("jwt_jwks"),
        &var("jwt_issuer"),
        &var("jwt_audience"),
    )
}

/// For a service's `check_config`: the credential variables are usable (a
/// malformed key list or JWKS shows in health, not only as 500s).
pub fn check_auth_config() -> Result<(), String> {
    authenticator().map(|_| ()).map_err(|e| e.to_string())
}

/// GET another service's JSON (see [`call_json`]).
pub async fn get_json(url: &str) -> Result<serde_json::Value, Route> {
    call_json(Request::get(url).build(), url).await
}

/// POST JSON to another service and read its JSON answer (see [`call_json`]).
pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<serde_json::Value, Route> {
    let req = Request::post(url, body.to_string())
        .header("content-type", "application/json")
        .build();
    call_json(req, url).await
}

/// Send a request to another service. A 2xx answer's JSON is returned (a
/// 201 of an import too); an
/// upstream 4xx with a stable error is the caller's mistake passed through
/// as is (an unknown symbol stays a 404), and so is an upstream 503
/// `store-unavailable`; anything else is a 502.
pub async fn call_json(req: Request, url: &str) -> Result<serde_json::Value, Route> {
    let resp: Response = spin_sdk::http::send(req)
        .await
        .map_err(|e| Route::error(502, "upstream-unavailable", format!("{url}: {e}")))?;
    let status = *resp.status();
    if (200..300).contains(&status) {
        return serde_json::from_slice(resp.body())
            .map_err(|e| Route::error(502, "upstream-malformed", format!("{url}: {e}")));
    }
    match serde_json::from_slice::<ApiError>(resp.body()) {
        Ok(error) if (400..500).contains(&status) => Err(Route::Error(status, error)),
        // The upstream's store is down: so is ours, for the caller's purposes.
        Ok(error) if store_unavailable(status, &error) => Err(Route::Error(503, error)),
        _ => Err(Route::error(
            502,
            "upstream-error",
            format!("{url}: http {status}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(route: Route) -> String {
        match route {
            Route::Error(400, error) => error.code,
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn a_query_holds_only_the_parameters_its_route_takes() {
        let query = Query::parse("from=2010-01-04&to=2010%2D02%2D01", &["from", "to"]).unwrap();
        assert_eq!(query.get("from"), Some("2010-01-04"));
        assert_eq!(query.get("to"), Some("2010-02-01"), "percent-decoded");
        assert_eq!(query.get("interval"), None);
        assert_eq!(
            code(Query::parse("from=1&form=2", &["from"]).unwrap_err()),
            "unknown-parameter"
        );
        assert_eq!(
            code(Query::parse("from=1&from=2", &["from"]).unwrap_err()),
            "invalid-from"
        );
        assert_eq!(
            code(Query::parse("x", &[]).unwrap_err()),
            "unknown-parameter"
        );
        assert!(Query::parse("", &[]).is_ok());
    }

    #[test]
    fn a_flag_is_true_or_false_and_nothing_else() {
        let flag = |query: &str| Query::parse(query, &["deep"]).unwrap().flag("deep");
        assert!(flag("deep=true").unwrap());
        assert!(flag("deep=1").unwrap());
        assert!(!flag("deep=false").unwrap());
        assert!(!flag("").unwrap());
        assert_eq!(code(flag("deep=yes").unwrap_err()), "invalid-deep");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        symbol: String,
        quantity: u64,
        #[serde(default)]
        weights: Option<Weights>,
        #[serde(default)]
        rows: Vec<Weights>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Weights {
        momentum: f64,
    }

    #[test]
    fn a_body_error_names_the_field() {
        let refused = |body: &str| code(json_body::<Order>(body.as_bytes()).unwrap_err());
        assert!(json_body::<Order>(br#"{"symbol":"AAPL","quantity":5}"#).is_ok());
        assert_eq!(refused("{not json"), "invalid-json");
        assert_eq!(
            refused(r#"{"symbol":"AAPL","quantity":5} x"#),
            "invalid-json"
        );
        assert_eq!(refused("[1, 2]"), "invalid-json");
        assert_eq!(
            refused(r#"{"symbol":"AAPL","quantity":-5}"#),
            "invalid-quantity"
        );
        assert_eq!(refused(r#"{"quantity":5}"#), "invalid-symbol");
        assert_eq!(
            refused(r#"{"symbol":"AAPL","quantity":5,"colour":"red"}"#),
            "unknown-field"
        );
        assert_eq!(
            refused(r#"{"symbol":"AAPL","quantity":5,"weights":{"momentum":"high"}}"#),
            "invalid-weights.momentum"
        );
        assert_eq!(
            refused(r#"{"symbol":"AAPL","quantity":5,"weights":{}}"#),
            "invalid-weights.momentum"
        );
        assert_eq!(
            refused(r#"{"symbol":"AAPL","quantity":5,"rows":[{"momentum":1},{"momentum":null}]}"#),
            "invalid-rows.momentum"
        );
    }
}
