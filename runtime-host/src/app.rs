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

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tracing::Instrument;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap, UpdateDeadline};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::capabilities::{self, RedisPool};
use crate::compose::Composer;
use crate::engine::{self, EngineSettings};
use crate::http_outbound::{CHAINING_SUFFIX, OutboundHttp};
use crate::key_value::KvStores;
use crate::limits::{BodyError, Limits};
use crate::manifest::{Manifest, RouteDecl};
use crate::metrics::Metrics;
use crate::outbound::AllowedHosts;
use crate::routes::Router;
use crate::runtime_config::RuntimeConfig;
use crate::sqlite::SqliteDatabases;
use crate::state::{ComponentConfig, HostState};
use crate::tls::TlsClient;
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
    /// Request bodies, header reads and connections.
    pub limits: Limits,
    /// Instances one component may have at once; the pool divided evenly
    /// between the components when `None`.
    pub max_instances_per_component: Option<u32>,
    /// Certificates trusted for TLS to Postgres and MQTT besides the system's.
    pub tls_ca_file: Option<PathBuf>,
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
            limits: Limits::default(),
            max_instances_per_component: None,
            tls_ca_file: None,
        }
    }
}

/// A loaded component, ready to instantiate.
pub struct LoadedComponent {
    pub config: Arc<ComponentConfig>,
    pre: ProxyPre<HostState>,
    /// Instances kept for reuse (only when reuse is enabled).
    idle: Mutex<Vec<Reusable>>,
    /// The instances this component may have alive at once (serving or
    /// idle), so that one component cannot take every slot of the pool: a
    /// caller waiting on a chained callee always leaves the callee its own.
    slots: Arc<Semaphore>,
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
    /// The component's instance slot this idle instance still holds.
    slot: OwnedSemaphorePermit,
}

/// Where a request landed, as Spin reports it to the component in headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// `spin-matched-route` and `spin-raw-component-route`: the route as written.
    pub raw: String,
    /// `spin-path-info`: the path below the route.
    pub path_info: String,
    /// `spin-path-match-<name>`: the `:name` segments' values.
    pub params: Vec<(String, String)>,
}

impl RouteInfo {
    /// A chained request (`http://<id>.spin.internal/path`): Spin routes it
    /// synthetically, as if matched against `/...` (`RouteMatch::synthetic` in
    /// Spin's `routes` crate), so the path info is the whole path.
    pub fn chained(path: &str) -> Self {
        Self {
            raw: "/...".into(),
            path_info: path.to_string(),
            params: Vec::new(),
        }
    }

    /// `spin-component-route`: the route without its trailing wildcard
    /// (`/api/v1/data` for `/api/v1/data/...`, empty for `/...`).
    pub fn component_route(&self) -> &str {
        self.raw.strip_suffix("/...").unwrap_or(&self.raw)
    }
}

/// The prefix of Spin's own routes (`health`, `info`).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// The client address Spin gives a chained request.
const CHAINED_CLIENT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

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
    /// The manifest's `application.version`.
    pub version: Option<String>,
    engine: Engine,
    router: Router,
    components: HashMap<String, Arc<LoadedComponent>>,
    pub kv: KvStores,
    pub sqlite: SqliteDatabases,
    pub redis: RedisPool,
    pub metrics: Metrics,
    /// TLS for outbound Postgres and MQTT.
    pub tls: TlsClient,
    request_timeout: Duration,
    memory_limit: usize,
    max_instance_reuse_count: u32,
    limits: Limits,
}

/// A command component to run as one of the manifest's components: its
/// grants, and its linker (the host's interfaces and its dependencies).
pub struct CommandComponent {
    pub config: Arc<ComponentConfig>,
    component: wasmtime::component::Component,
    linker: Linker<HostState>,
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
        Self::load_as(settings, metrics, None).map(|(app, _)| app)
    }

    /// The application, with no component loaded, for running the command
    /// component `wasm` as component `id`: its grants and its dependencies
    /// ([`Self::run_command`]).
    pub fn load_for_command(
        settings: &AppSettings,
        metrics: Metrics,
        id: &str,
        wasm: &Path,
    ) -> anyhow::Result<(Arc<Self>, CommandComponent)> {
        let (app, command) = Self::load_as(settings, metrics, Some((id, wasm)))?;
        Ok((app, command.context("the command component")?))
    }

    fn load_as(
        settings: &AppSettings,
        metrics: Metrics,
        command: Option<(&str, &Path)>,
    ) -> anyhow::Result<(Arc<Self>, Option<CommandComponent>)> {
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

        let selected: Vec<String> = if let Some((id, _)) = command {
            if !manifest.component.contains_key(id) {
                bail!("`{id}` is not a component of the manifest");
            }
            vec![id.to_string()]
        } else if settings.components.is_empty() {
            manifest.component.keys().cloned().collect()
        } else {
            for id in &settings.components {
                if !manifest.component.contains_key(id) {
                    bail!("--component-id `{id}` is not a component of the manifest");
                }
            }
            settings.components.clone()
        };

        settings.limits.check(&selected)?;
        // Each component's share of the pool, unless set: the shares never add
        // up to more than the pool, so no component can starve another.
        let per_component = settings
            .max_instances_per_component
            .unwrap_or(settings.engine.max_instances / selected.len().max(1) as u32)
            .max(1);

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

        let state_dir = settings
            .state_dir
            .clone()
            .unwrap_or_else(|| base.join(".spin"));
        let kv = KvStores::new(&runtime_config.key_value_stores, &state_dir)?;
        let sqlite = SqliteDatabases::new(&runtime_config.sqlite_databases, &state_dir);

        let engine = engine::build_engine(&settings.engine)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        capabilities::add_to_linker(&mut linker)?;

        let mut composer = Composer::new(
            &engine,
            &linker,
            &manifest,
            &base,
            settings.cache_dir.as_deref(),
        );
        let mut components = HashMap::new();
        let mut command_config = None;
        for id in &selected {
            let decl = &manifest.component[id];
            let config = component_config(id, &manifest, &variables, &base, &kv, &sqlite)?;
            if let Some((_, wasm)) = command {
                let config = Arc::new(config);
                let component = engine::load_component(&engine, wasm, None)?.component;
                let linker = composer.linker(id, &component, &config)?;
                command_config = Some(CommandComponent {
                    config,
                    component,
                    linker,
                });
                continue;
            }
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
            let (compiled, cache_hit) = composer
                .compile(source)
                .with_context(|| format!("failed to load component `{id}`"))?;
            let config = Arc::new(config);
            let pre = composer
                .linker(id, &compiled, &config)?
                .instantiate_pre(&compiled)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("component `{id}` imports something this host lacks"))?;
            let pre = ProxyPre::new(pre)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("component `{id}` does not export wasi:http/incoming-handler")
                })?;
            metrics.loaded(id, cache_hit, started.elapsed());
            metrics.register_component(id);
            tracing::info!(
                component = %id,
                cache_hit,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "component loaded"
            );
            components.insert(
                id.clone(),
                Arc::new(LoadedComponent {
                    config,
                    pre,
                    idle: Mutex::new(Vec::new()),
                    slots: Arc::new(Semaphore::new(per_component as usize)),
                }),
            );
        }

        drop(composer);
        let app = Arc::new(Self {
            name: manifest.application.name.clone(),
            version: manifest.application.version.clone(),
            engine,
            router,
            components,
            kv,
            sqlite,
            redis: RedisPool::default(),
            metrics,
            request_timeout: settings.request_timeout,
            memory_limit: settings.engine.max_instance_memory,
            max_instance_reuse_count: settings.max_instance_reuse_count.max(1),
            limits: settings.limits.clone(),
            tls: TlsClient::new(settings.tls_ca_file.as_deref())?,
        });
        Ok((app, command_config))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
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
        if let Some(well_known) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return self.well_known(well_known);
        }
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
        // Matched once: the route that chose the component is what Spin reports.
        let route = RouteInfo {
            raw: matched.route.raw.clone(),
            path_info: matched.path_info,
            params: matched.params,
        };
        self.serve(&component, req, info, route).await
    }

    /// Spin's own routes under `/.well-known/spin/`, answered before any
    /// component route (a component cannot take them).
    fn well_known(&self, name: &str) -> http::Response<HyperOutgoingBody> {
        let (content_type, body) = match name {
            "health" => ("text/plain", "OK".to_string()),
            "info" => (
                "application/json",
                serde_json::json!({ "name": self.name, "version": self.version }).to_string(),
            ),
            _ => return error_response(404, "not-found", "no such well-known route"),
        };
        text_response(200, content_type, body)
    }

    /// Call one component with a chained request (`http://<id>.spin.internal/...`),
    /// which Spin routes synthetically, as if matched against `/...`.
    pub async fn call_component<B>(
        self: &Arc<Self>,
        component: &Arc<LoadedComponent>,
        req: http::Request<B>,
        info: CallInfo,
    ) -> http::Response<HyperOutgoingBody>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let route = RouteInfo::chained(req.uri().path());
        self.serve(component, req, info, route).await
    }

    /// Call one component with one request, with the host's limits, and
    /// turn any failure of the guest into a JSON error response.
    async fn serve<B>(
        self: &Arc<Self>,
        component: &Arc<LoadedComponent>,
        mut req: http::Request<B>,
        info: CallInfo,
        route: RouteInfo,
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
        set_spin_headers(&mut req, &route, &trace, info);
        // The epoch deadline stops a guest that runs too long; this backstop, a little
        // later, stops one that waits too long in a host call (where epochs do not tick).
        let outcome = tokio::time::timeout(
            self.request_timeout + TIMEOUT_GRACE,
            async {
                let req = self.read_request(&id, req).await?;
                self.clone()
                    .invoke(component.clone(), req, trace, info.depth, started)
                    .await
            }
            .instrument(span.clone()),
        )
        .await;
        let trace_id = trace.trace_id_hex();
        let response = match outcome {
            Ok(Ok(response)) => response,
            Ok(Err(failure)) => {
                span.in_scope(|| failure.log());
                failure.into_response(&trace_id)
            }
            Err(_) => {
                self.metrics.timeout(&id);
                Failure::Timeout.into_response(&trace_id)
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

    /// The request with its body read whole, within the component's limit,
    /// before an instance is taken for it (see [`crate::limits`]).
    async fn read_request<B>(
        &self,
        component: &str,
        req: http::Request<B>,
    ) -> Result<http::Request<Full<Bytes>>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let (parts, body) = req.into_parts();
        let body = body.map_err(|e| format!("{:?}", Into::<wasmtime_wasi_http::Error>::into(e)));
        let limit = self.limits.body_limit(component);
        // A body that has not all arrived within the request timeout is the
        // client's fault (408), never the component's: no instance is taken yet.
        let reading = crate::limits::read_body(&parts.headers, body, limit);
        match tokio::time::timeout(self.request_timeout, reading).await {
            Err(_) => Err(Failure::BodyTimeout),
            Ok(Ok(bytes)) => Ok(http::Request::from_parts(parts, Full::new(bytes))),
            Ok(Err(BodyError::TooLarge { limit })) => Err(Failure::BodyTooLarge(limit)),
            Ok(Err(e @ BodyError::Unreadable(_))) => Err(Failure::BadRequest(e.to_string())),
        }
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
        let (mut store, proxy, served, slot) = match reused {
            Some(mut r) => {
                let data = r.store.data_mut();
                data.outbound.trace = trace;
                data.outbound.depth = depth;
                data.deadline = deadline;
                (r.store, Some(r.proxy), r.served, r.slot)
            }
            None => {
                let slot = tokio::time::timeout(SLOT_WAIT, component.slots.clone().acquire_owned())
                    .await
                    .map_err(|_| Failure::Overloaded)?
                    .map_err(|_| Failure::Overloaded)?;
                let store = self
                    .new_store(&component.config, trace, depth, deadline)
                    .map_err(Failure::Host)?;
                (store, None, 0, slot)
            }
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
        let mut task = AbortOnDrop(Some(tokio::task::spawn(
            async move {
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
                                slot,
                            });
                        }
                    }
                    Ok(()) => {}
                    Err(e) => app.record_guest_error(&task_component.config.id, e),
                }
                result
            }
            // The task's own log lines (a trap's details) carry the request's trace id.
            .instrument(tracing::Span::current()),
        )));

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
        config: &Arc<ComponentConfig>,
        trace: TraceParent,
        depth: u32,
        deadline: Instant,
    ) -> anyhow::Result<Store<HostState>> {
        let wasi = self.wasi_ctx(config)?;
        let state = HostState {
            wasi,
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
            linked: HashMap::new(),
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

    /// The WASI context of a component with `config`'s grants: its
    /// environment, its mounts, and the sockets its outbound hosts allow.
    pub(crate) fn wasi_ctx(&self, config: &Arc<ComponentConfig>) -> anyhow::Result<WasiCtx> {
        self.wasi_builder(config).map(|mut wasi| wasi.build())
    }

    fn wasi_builder(&self, config: &Arc<ComponentConfig>) -> anyhow::Result<WasiCtxBuilder> {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout()
            .inherit_stderr()
            .envs(&config.environment);
        // wasi:sockets: connections as `allowed_outbound_hosts` grants them
        // (schemes `tcp` and `udp`), as Spin does. The unspecified address
        // is the implicit bind of a connect; an explicit bind, listen or
        // accept is not something a request handler does.
        let grants = config.clone();
        let metrics = self.metrics.clone();
        wasi.allow_tcp(true).allow_udp(true).socket_addr_check(move |addr, used_for| {
            let allowed = match used_for {
                SocketAddrUse::TcpConnect => grants.allowed_hosts.allows_socket("tcp", addr),
                SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                    grants.allowed_hosts.allows_socket("udp", addr)
                }
                SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                    addr.ip().is_unspecified() && addr.port() == 0
                }
                SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
            };
            if !allowed && !matches!(used_for, SocketAddrUse::TcpBind | SocketAddrUse::UdpBind) {
                metrics.outbound_denied(&grants.id, "socket");
                tracing::warn!(component = %grants.id, %addr, ?used_for, "socket denied by allowed_outbound_hosts");
            }
            Box::pin(async move { allowed })
        });
        for mount in &config.mounts {
            wasi.preopened_dir(&mount.host, &mount.guest, FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("failed to mount {}", mount.host.display()))?;
        }
        Ok(wasi)
    }

    /// Run `command` (a test binary of a component crate) with `args`, to
    /// completion; whether it exited successfully.
    pub async fn run_command(
        self: &Arc<Self>,
        command: &CommandComponent,
        args: &[String],
    ) -> anyhow::Result<bool> {
        let config = &command.config;
        // A test run has no request deadline: the epoch does not tick here.
        let deadline = Instant::now() + Duration::from_secs(24 * 3600);
        let mut store = self.new_store(config, TraceParent::new_root(), 0, deadline)?;
        let mut wasi = self.wasi_builder(config)?;
        wasi.args(args);
        store.data_mut().wasi = wasi.build();
        let command = Command::instantiate_async(&mut store, &command.component, &command.linker)
            .await
            .map_err(anyhow::Error::from)
            .context("not a command this host can run")?;
        let exit = command.wasi_cli_run().call_run(&mut store).await;
        match exit {
            Ok(outcome) => Ok(outcome.is_ok()),
            // `std::process::exit(code)` (how the test harness ends) is an exit trap.
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(code) => Ok(code.0 == 0),
                None => Err(anyhow::Error::from(e)),
            },
        }
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

/// How long a request waits for one of its component's instance slots
/// before it is answered 503 `overloaded`: a short queue absorbs a burst, a
/// long one would only pile up clients.
pub const SLOT_WAIT: Duration = Duration::from_secs(2);

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
    /// The body passed the component's limit (bytes).
    BodyTooLarge(u64),
    /// The body did not all arrive within the request timeout.
    BodyTimeout,
    Guest(String),
    Timeout,
    /// Every instance slot of the pool is taken: back-pressure, not a fault.
    Overloaded,
    /// The guest trapped or ran past its deadline; the component's task has
    /// already counted it and logged its details.
    Recorded {
        timeout: bool,
    },
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
        Self::Recorded {
            timeout: matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)),
        }
    }

    /// The details (a trap's wasm backtrace, a host error's chain) belong in
    /// the log, with the request's trace id; the client gets a generic answer.
    fn log(&self) {
        match self {
            Self::BadRequest(detail) => tracing::info!("request refused: {detail}"),
            Self::BodyTooLarge(limit) => {
                tracing::info!("request refused: its body is over the limit of {limit} bytes")
            }
            Self::BodyTimeout => {
                tracing::info!(
                    "request refused: its body did not arrive within the request timeout"
                )
            }
            Self::Guest(detail) => tracing::error!("component failed: {detail}"),
            Self::Timeout => tracing::warn!("component timed out"),
            Self::Overloaded => tracing::warn!("every instance slot is busy"),
            Self::Recorded { .. } => {}
            Self::Host(e) => tracing::error!("host error: {e:#}"),
        }
    }

    /// What the client sees: a stable code, a short message and the trace id
    /// under which the log holds the rest, never the details themselves.
    fn into_response(self, trace_id: &str) -> http::Response<HyperOutgoingBody> {
        let too_large;
        let (status, code, message) = match self {
            Self::BadRequest(_) => (400, "bad-request", "the request could not be read"),
            Self::BodyTooLarge(limit) => {
                too_large =
                    format!("the request body is larger than this service accepts ({limit} bytes)");
                (413, "body-too-large", too_large.as_str())
            }
            Self::BodyTimeout => (
                408,
                "request-timeout",
                "the request body did not arrive within the request timeout",
            ),
            Self::Guest(_) | Self::Recorded { timeout: false } => {
                (500, "component-failed", "the component failed")
            }
            Self::Timeout | Self::Recorded { timeout: true } => (
                500,
                "component-timeout",
                "the component did not answer within the request timeout",
            ),
            Self::Overloaded => (
                503,
                "overloaded",
                "every instance slot is busy; retry shortly",
            ),
            Self::Host(_) => (500, "host-error", "the host could not serve the request"),
        };
        let mut response = error_response_traced(status, code, message, Some(trace_id));
        if status == 503 {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// A whole body of one content type.
pub fn text_response(
    status: u16,
    content_type: &'static str,
    body: String,
) -> http::Response<HyperOutgoingBody> {
    let mut response = http::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// A JSON error body in the platform's error shape (`{code, message}`).
pub fn error_response(status: u16, code: &str, message: &str) -> http::Response<HyperOutgoingBody> {
    error_response_traced(status, code, message, None)
}

/// The platform's error shape with the trace id the log files the details under.
pub fn error_response_traced(
    status: u16,
    code: &str,
    message: &str,
    trace_id: Option<&str>,
) -> http::Response<HyperOutgoingBody> {
    let mut body = serde_json::json!({ "code": code, "message": message });
    if let Some(trace_id) = trace_id {
        body["trace_id"] = trace_id.into();
    }
    text_response(status, "application/json", body.to_string())
}

/// Spin's request headers (its `trigger-http` crate's `compute_default_headers`).
/// Any `spin-*` header a client sent is dropped first: components trust these
/// to come from the host.
///
/// A chained request reaches the callee as Spin's outbound interceptor hands
/// it over: without a `Host` header (Spin's outbound HTTP removes it), so the
/// full URL names `localhost`, and from the client address `0.0.0.0:0`.
fn set_spin_headers<B>(
    req: &mut http::Request<B>,
    route: &RouteInfo,
    trace: &TraceParent,
    info: CallInfo,
) {
    let chained = info.depth > 0;
    if chained {
        req.headers_mut().remove(http::header::HOST);
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            (!chained)
                .then(|| req.uri().authority().map(|a| a.to_string()))
                .flatten()
        })
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
    set("spin-component-route", route.component_route().to_string());
    set("spin-base-path", "/".into());
    let client_addr = if chained {
        Some(CHAINED_CLIENT_ADDR)
    } else {
        info.client_addr
    };
    if let Some(addr) = client_addr {
        set("spin-client-addr", addr.to_string());
    }
    set("traceparent", trace.to_string());
    for (name, value) in &route.params {
        let name = format!(
            "spin-path-match-{}",
            name.replace('_', "-").to_ascii_lowercase()
        );
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            req.headers_mut().insert(name, value);
        }
    }
    if !chained
        && req.headers().get(http::header::HOST).is_none()
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
    sqlite: &SqliteDatabases,
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
    let databases: Vec<&str> = sqlite.labels().collect();
    for label in &decl.sqlite_databases {
        if !databases.contains(&label.as_str()) {
            bail!(
                "component `{id}` uses sqlite database `{label}`, which the runtime config does not define"
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
        sqlite_databases: decl.sqlite_databases.clone(),
        environment: decl
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        mounts: manifest.mounts(id, base)?,
    })
}
