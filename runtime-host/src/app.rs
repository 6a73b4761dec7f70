//! The application: the manifest's components compiled, linked and
//! pre-instantiated, and the call of one component for one request.
//!
//! A request gets a fresh instance (Spin's semantics for WASI 0.2
//! components) unless instance reuse is asked for. Each instance runs with
//! a memory limit and a deadline enforced by epoch interruption; a guest
//! that traps, loops or exhausts its memory fails its own request with a
//! JSON 500 and nothing else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tracing::Instrument;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::capabilities::{self, RedisPool};
use crate::engine::{self, EngineSettings};
use crate::http_outbound::{CHAINING_SUFFIX, OutboundHttp};
use crate::key_value::KvStores;
use crate::manifest::{Manifest, RouteDecl};
use crate::metrics::Metrics;
use crate::outbound::AllowedHosts;
use crate::routes::Router;
use crate::runtime_config::RuntimeConfig;
use crate::state::{ComponentConfig, HostState};
use crate::trace::TraceParent;
use crate::variables::{VariableSources, Variables};

/// Everything `runtime-host up` needs to load an application.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub manifest: PathBuf,
    /// Run only these components (selective deployment); all when empty.
    pub components: Vec<String>,
    pub runtime_config: Option<PathBuf>,
    /// Where the default key-value store lives; `<manifest dir>/.spin` by default.
    pub state_dir: Option<PathBuf>,
    /// Where compiled components are cached; no cache when `None`.
    pub cache_dir: Option<PathBuf>,
    /// `--variable name=value`.
    pub variables: Vec<(String, String)>,
    /// The environment `SPIN_VARIABLE_*` is read from.
    pub env: HashMap<String, String>,
    pub engine: EngineSettings,
    pub request_timeout: Duration,
    /// How many requests one instance may serve (1: a fresh instance per request).
    pub max_instance_reuse_count: u32,
}

impl AppSettings {
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            components: Vec::new(),
            runtime_config: None,
            state_dir: None,
            cache_dir: None,
            variables: Vec::new(),
            env: HashMap::new(),
            engine: EngineSettings {
                pooling: true,
                max_instances: 1000,
                max_instance_memory: 256 << 20,
            },
            request_timeout: Duration::from_secs(30),
            max_instance_reuse_count: 1,
        }
    }
}

/// A loaded component, ready to instantiate.
pub struct LoadedComponent {
    pub config: Arc<ComponentConfig>,
    pre: ProxyPre<HostState>,
    /// Instances kept for reuse (only when reuse is enabled).
    idle: Mutex<Vec<Reusable>>,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("id", &self.config.id)
            .finish_non_exhaustive()
    }
}

struct Reusable {
    store: Store<HostState>,
    proxy: Proxy,
    served: u32,
}

/// Where a request landed, as Spin reports it to the component in headers.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub raw: String,
    pub base: String,
    pub path_info: String,
}

/// How a component call came to be.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallInfo {
    pub client_addr: Option<SocketAddr>,
    /// 0 for a request from outside, n for the n-th chained hop.
    pub depth: u32,
}

/// A loaded application.
pub struct App {
    pub name: String,
    engine: Engine,
    router: Router,
    components: HashMap<String, Arc<LoadedComponent>>,
    /// Each component's public routes, to compute `spin-path-info` for chained calls.
    routes_by_component: HashMap<String, Router>,
    pub kv: KvStores,
    pub redis: RedisPool,
    pub metrics: Metrics,
    request_timeout: Duration,
    memory_limit: usize,
    max_instance_reuse_count: u32,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("components", &self.components.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Load, check and compile an application.
    pub fn load(settings: &AppSettings, metrics: Metrics) -> anyhow::Result<Arc<Self>> {
        let manifest = Manifest::load(&settings.manifest)?;
        let base = settings
            .manifest
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let runtime_config = match &settings.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let sources = VariableSources {
            cli: settings.variables.iter().cloned().collect(),
            env: settings.env.clone(),
            runtime_config: runtime_config.variables.clone(),
        };
        let variables = Variables::resolve(&manifest, &sources)?;

        let selected: Vec<String> = if settings.components.is_empty() {
            manifest.component.keys().cloned().collect()
        } else {
            for id in &settings.components {
                if !manifest.component.contains_key(id) {
                    bail!("--component-id `{id}` is not a component of the manifest");
                }
            }
            settings.components.clone()
        };

        let routes: Vec<(&str, &str)> = manifest
            .trigger
            .http
            .iter()
            .filter(|t| selected.contains(&t.component))
            .filter_map(|t| match &t.route {
                RouteDecl::Path(route) => Some((route.as_str(), t.component.as_str())),
                RouteDecl::Private { .. } => None,
            })
            .collect();
        let router = Router::new(routes.iter().copied())?;
        let mut routes_by_component = HashMap::new();
        for id in &selected {
            let own = routes
                .iter()
                .copied()
                .filter(|(_, component)| component == id);
            routes_by_component.insert(id.clone(), Router::new(own)?);
        }

        let state_dir = settings
            .state_dir
            .clone()
            .unwrap_or_else(|| base.join(".spin"));
        let kv = KvStores::new(&runtime_config.key_value_stores, &state_dir)?;

        let engine = engine::build_engine(&settings.engine)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        capabilities::add_to_linker(&mut linker)?;

        let mut components = HashMap::new();
        for id in &selected {
            let decl = &manifest.component[id];
            let config = component_config(id, &manifest, &variables, &base, &kv)?;
            for pattern in config.allowed_hosts.patterns() {
                if let Some(target) = pattern
                    .exact_host()
                    .and_then(|h| h.strip_suffix(CHAINING_SUFFIX))
                    && !selected.iter().any(|s| s == target)
                {
                    bail!(
                        "component `{id}` chains to `{target}`, which is not selected \
                         (add --component-id {target}, or give it a non-local URL)"
                    );
                }
            }
            let crate::manifest::SourceDecl::Path(source) = &decl.source else {
                bail!("component `{id}`: only local file sources are supported");
            };
            let started = Instant::now();
            let compiled =
                engine::load_component(&engine, &base.join(source), settings.cache_dir.as_deref())
                    .with_context(|| format!("failed to load component `{id}`"))?;
            let pre = linker
                .instantiate_pre(&compiled.component)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("component `{id}` imports something this host lacks"))?;
            let pre = ProxyPre::new(pre)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("component `{id}` does not export wasi:http/incoming-handler")
                })?;
            metrics.loaded(id, compiled.cache_hit, started.elapsed());
            metrics.register_component(id);
            tracing::info!(
                component = %id,
                cache_hit = compiled.cache_hit,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "component loaded"
            );
            components.insert(
                id.clone(),
                Arc::new(LoadedComponent {
                    config: Arc::new(config),
                    pre,
                    idle: Mutex::new(Vec::new()),
                }),
            );
        }

        Ok(Arc::new(Self {
            name: manifest.application.name.clone(),
            engine,
            router,
            components,
            routes_by_component,
            kv,
            redis: RedisPool::default(),
            metrics,
            request_timeout: settings.request_timeout,
            memory_limit: settings.engine.max_instance_memory,
            max_instance_reuse_count: settings.max_instance_reuse_count.max(1),
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn component(&self, id: &str) -> Option<Arc<LoadedComponent>> {
        self.components.get(id).cloned()
    }

    pub fn component_ids(&self) -> impl Iterator<Item = &str> {
        self.components.keys().map(String::as_str)
    }

    /// Serve a request from outside: route it, then call its component.
    pub async fn handle<B>(
        self: &Arc<Self>,
        req: http::Request<B>,
        client_addr: Option<SocketAddr>,
    ) -> http::Response<HyperOutgoingBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let path = req.uri().path().to_string();
        let Some(matched) = self.router.route(&path) else {
            return error_response(404, "not-found", &format!("no route for `{path}`"));
        };
        let Some(component) = self.component(&matched.route.component) else {
            return error_response(404, "not-found", &format!("no route for `{path}`"));
        };
        let info = CallInfo {
            client_addr,
            depth: 0,
        };
        self.call_component(&component, req, info).await
    }

    /// How Spin would describe `path` to `component`: its matching public route,
    /// or the whole path for a component reached only by chaining.
    fn route_info(&self, component: &str, path: &str) -> RouteInfo {
        let matched = self
            .routes_by_component
            .get(component)
            .and_then(|router| router.route(path))
            .map(|m| (m.route.clone(), m.path_info));
        match matched {
            Some((route, path_info)) => RouteInfo {
                raw: route.raw,
                base: route.base,
                path_info,
            },
            None => RouteInfo {
                raw: "/...".into(),
                base: "/".into(),
                path_info: path.to_string(),
            },
        }
    }

    /// Call one component with one request, with the host's limits, and
    /// turn any failure of the guest into a JSON error response.
    pub async fn call_component<B>(
        self: &Arc<Self>,
        component: &Arc<LoadedComponent>,
        mut req: http::Request<B>,
        info: CallInfo,
    ) -> http::Response<HyperOutgoingBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = component.config.id.clone();
        let _in_flight = self.metrics.in_flight(&id);
        let started = Instant::now();
        let parent = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        let span = tracing::info_span!(
            "request",
            otel.name = %format!("{} {}", req.method(), id),
            otel.kind = "server",
            component = %id,
            method = %req.method(),
            path = %req.uri().path(),
            trace_id = tracing::field::Empty,
        );
        let trace = crate::telemetry::continue_trace(&span, parent);
        span.record("trace_id", trace.trace_id_hex());
        let route = self.route_info(&id, req.uri().path());
        set_spin_headers(&mut req, &route, &trace, info.client_addr);
        // The epoch deadline stops a guest that runs too long; this backstop, a little
        // later, stops one that waits too long in a host call (where epochs do not tick).
        let outcome = tokio::time::timeout(
            self.request_timeout + TIMEOUT_GRACE,
            self.clone()
                .invoke(component.clone(), req, trace, info.depth, started)
                .instrument(span.clone()),
        )
        .await;
        let response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(failure)) => failure.into_response(),
            Err(_) => {
                self.metrics.timeout(&id);
                Failure::Timeout.into_response()
            }
        };
        let status = response.status().as_u16();
        self.metrics.request(&id, status, started.elapsed());
        span.in_scope(|| {
            tracing::info!(
                status,
                elapsed_us = started.elapsed().as_micros() as u64,
                "request served"
            );
        });
        response
    }

    async fn invoke<B>(
        self: Arc<Self>,
        component: Arc<LoadedComponent>,
        req: http::Request<B>,
        trace: TraceParent,
        depth: u32,
        started: Instant,
    ) -> Result<http::Response<HyperOutgoingBody>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let id = component.config.id.clone();
        let deadline = started + self.request_timeout;
        let reused = if self.max_instance_reuse_count > 1 {
            component.idle.lock().ok().and_then(|mut idle| idle.pop())
        } else {
            None
        };
        let (mut store, proxy, served) = match reused {
            Some(mut r) => {
                let data = r.store.data_mut();
                data.outbound.trace = trace;
                data.outbound.depth = depth;
                data.deadline = deadline;
                (r.store, Some(r.proxy), r.served)
            }
            None => (
                self.new_store(&component, trace, depth, deadline)
                    .map_err(Failure::Host)?,
                None,
                0,
            ),
        };
        let scheme = if req.uri().scheme_str() == Some("https") {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(scheme, req)
            .map_err(|e| Failure::BadRequest(format!("{e:#}")))?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(|e| Failure::Host(e.into()))?;

        let app = self.clone();
        let task_component = component.clone();
        let mut task = AbortOnDrop(Some(tokio::task::spawn(async move {
            let proxy = match proxy {
                Some(proxy) => proxy,
                None => {
                    let instantiating = Instant::now();
                    let proxy = task_component.pre.instantiate_async(&mut store).await?;
                    app.metrics
                        .instantiated(&task_component.config.id, instantiating.elapsed());
                    proxy
                }
            };
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, request, out)
                .await;
            match &result {
                Ok(()) if served + 1 < app.max_instance_reuse_count => {
                    if let Ok(mut idle) = task_component.idle.lock() {
                        idle.push(Reusable {
                            store,
                            proxy,
                            served: served + 1,
                        });
                    }
                }
                Ok(()) => {}
                Err(e) => app.record_guest_error(&task_component.config.id, e),
            }
            result
        })));

        match receiver.await {
            Ok(Ok(response)) => {
                task.detach();
                Ok(response)
            }
            Ok(Err(code)) => {
                task.detach();
                Err(Failure::Guest(format!("component returned error {code:?}")))
            }
            Err(_) => match task.join().await {
                Ok(Ok(())) => Err(Failure::Guest(format!(
                    "component `{id}` returned without setting a response"
                ))),
                Ok(Err(e)) => Err(Failure::from_guest_error(&e)),
                Err(e) => Err(Failure::Host(anyhow::anyhow!("component task failed: {e}"))),
            },
        }
    }

    fn new_store(
        self: &Arc<Self>,
        component: &Arc<LoadedComponent>,
        trace: TraceParent,
        depth: u32,
        deadline: Instant,
    ) -> anyhow::Result<Store<HostState>> {
        let config = &component.config;
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout()
            .inherit_stderr()
            .envs(&config.environment);
        for mount in &config.mounts {
            wasi.preopened_dir(&mount.host, &mount.guest, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("failed to mount {}", mount.host.display()))?;
        }
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.memory_limit)
                .instances(64)
                .tables(64)
                .memories(8)
                .build(),
            outbound: OutboundHttp {
                component: config.clone(),
                app: self.clone(),
                trace,
                depth,
            },
            component: config.clone(),
            app: self.clone(),
            deadline,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        // Check the deadline at every epoch tick and yield to other requests meanwhile,
        // so a looping guest neither overruns its time nor starves its neighbours.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    fn record_guest_error(&self, component: &str, error: &wasmtime::Error) {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                self.metrics.timeout(component);
                tracing::warn!(component, "component ran past its deadline");
            }
            _ => {
                self.metrics.trap(component);
                tracing::warn!(component, "component trapped: {error:#}");
            }
        }
    }
}

/// How long after the request timeout the host gives up on a guest waiting in a host call.
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// A component's task, aborted if the request is abandoned before a response
/// head exists (the backstop timeout), so that it is counted once, there.
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    /// Let the task run on by itself (it may still be streaming the body).
    fn detach(mut self) {
        self.0.take();
    }

    async fn join(&mut self) -> Result<T, tokio::task::JoinError> {
        match self.0.take() {
            Some(handle) => handle.await,
            None => unreachable!("joined once"),
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// Why a component call produced no response of its own.
#[derive(Debug)]
enum Failure {
    BadRequest(String),
    Guest(String),
    Timeout,
    /// Every instance slot of the pool is taken: back-pressure, not a fault.
    Overloaded,
    Host(anyhow::Error),
}

impl Failure {
    fn from_guest_error(error: &wasmtime::Error) -> Self {
        if error
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return Self::Overloaded;
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Self::Timeout,
            _ => Self::Guest(format!("{error:#}")),
        }
    }

    fn into_response(self) -> http::Response<HyperOutgoingBody> {
        match self {
            Self::BadRequest(msg) => error_response(400, "bad-request", &msg),
            Self::Guest(msg) => error_response(
                500,
                "component-failed",
                &format!("the component failed: {msg}"),
            ),
            Self::Timeout => error_response(
                500,
                "component-timeout",
                "the component did not answer within the request timeout",
            ),
            Self::Overloaded => {
                let mut response = error_response(
                    503,
                    "overloaded",
                    "every instance slot is busy; retry shortly",
                );
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                response
            }
            Self::Host(e) => error_response(500, "host-error", &format!("{e:#}")),
        }
    }
}

/// A JSON error body in the platform's error shape (`{code, message}`).
pub fn error_response(status: u16, code: &str, message: &str) -> http::Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut response = http::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Spin's request headers. Any `spin-*` header a client sent is dropped
/// first: components trust these to come from the host.
fn set_spin_headers<B>(
    req: &mut http::Request<B>,
    route: &RouteInfo,
    trace: &TraceParent,
    client_addr: Option<SocketAddr>,
) {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let scheme = req.uri().scheme_str().unwrap_or("http").to_string();
    let headers = req.headers_mut();
    let spoofed: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(
        "spin-full-url",
        format!("{scheme}://{host}{path_and_query}"),
    );
    set("spin-path-info", route.path_info.clone());
    set("spin-matched-route", route.raw.clone());
    set("spin-raw-component-route", route.raw.clone());
    set("spin-component-route", route.base.clone());
    set("spin-base-path", "/".into());
    if let Some(addr) = client_addr {
        set("spin-client-addr", addr.to_string());
    }
    set("traceparent", trace.to_string());
    if req.headers().get(http::header::HOST).is_none()
        && let Ok(value) = http::HeaderValue::from_str(&host)
    {
        req.headers_mut().insert(http::header::HOST, value);
    }
}

fn component_config(
    id: &str,
    manifest: &Manifest,
    variables: &Variables,
    base: &Path,
    kv: &KvStores,
) -> anyhow::Result<ComponentConfig> {
    let decl = &manifest.component[id];
    let allowed: Vec<String> = decl
        .allowed_outbound_hosts
        .iter()
        .map(|entry| variables.render(entry))
        .collect::<anyhow::Result<_>>()
        .with_context(|| format!("component `{id}`: allowed_outbound_hosts"))?;
    let allowed_hosts = AllowedHosts::parse(allowed.iter().map(String::as_str))
        .with_context(|| format!("component `{id}`: allowed_outbound_hosts"))?;
    let known: Vec<&str> = kv.labels().collect();
    for label in &decl.key_value_stores {
        if !known.contains(&label.as_str()) {
            bail!(
                "component `{id}` uses key-value store `{label}`, which the runtime config does not define"
            );
        }
    }
    Ok(ComponentConfig {
        id: id.to_string(),
        variables: variables
            .for_component(&decl.variables)
            .with_context(|| format!("component `{id}`: variables"))?,
        allowed_hosts,
        key_value_stores: decl.key_value_stores.clone(),
        environment: decl
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        mounts: manifest.mounts(id, base)?,
    })
}
