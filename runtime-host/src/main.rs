//! `runtime-host`: run a Spin application on Wasmtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use runtime_host::engine::EngineSettings;
use runtime_host::limits;
use runtime_host::telemetry::{self, Telemetry};
use runtime_host::{App, AppSettings, Metrics};
use tokio::net::TcpListener;

/// See Cargo.toml: the host's own memory is returned to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "runtime-host",
    version,
    about = "Run a Spin application (spin.toml) on Wasmtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the application, like `spin up`.
    Up(UpArgs),
    /// Compile the application's components into the cache and exit
    /// (for container images: start-up then loads precompiled code).
    Compile(CommonArgs),
    /// Run a component crate's test binary, as cargo's runner for
    /// `wasm32-wasip2` (`CARGO_TARGET_WASM32_WASIP2_RUNNER="runtime-host test"`):
    /// a WASI command with this host's interfaces and the grants of the
    /// manifest's component it is built from (its file name,
    /// `data_service-<hash>.wasm`), on a key-value store of its own.
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The test binary (a WASI command component).
    wasm: PathBuf,
    /// The test harness's own arguments (a filter, `--nocapture`, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// The application manifest.
    #[arg(
        short = 'f',
        long = "from",
        default_value = "spin.toml",
        env = "RUNTIME_HOST_MANIFEST"
    )]
    manifest: PathBuf,

    /// Run only this component (repeatable); all components when absent.
    #[arg(
        short = 'c',
        long = "component-id",
        env = "RUNTIME_HOST_COMPONENT_IDS",
        value_delimiter = ','
    )]
    component_ids: Vec<String>,

    /// Spin-format runtime config (key-value stores, variable providers).
    #[arg(long, env = "RUNTIME_HOST_RUNTIME_CONFIG_FILE")]
    runtime_config_file: Option<PathBuf>,

    /// Directory for the default key-value store [default: <manifest dir>/.spin].
    #[arg(long, env = "RUNTIME_HOST_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// Directory for compiled components [default: <state dir>/compiled].
    #[arg(long, env = "RUNTIME_HOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not cache compiled components.
    #[arg(long, env = "RUNTIME_HOST_NO_CACHE")]
    no_cache: bool,

    /// Set an application variable (repeatable): `name=value`.
    #[arg(long = "variable", value_parser = parse_variable)]
    variables: Vec<(String, String)>,

    /// Allocate instances on demand instead of from a pre-reserved pool.
    #[arg(long, env = "RUNTIME_HOST_NO_POOLING")]
    no_pooling: bool,

    /// How many instances may be alive at once (pooling allocator).
    #[arg(long, default_value_t = 1000, env = "RUNTIME_HOST_MAX_INSTANCES")]
    max_instances: u32,

    /// Instances one component may have at once [default: the pool divided
    /// evenly between the components], so that callers waiting on chained
    /// callees can never hold every slot.
    #[arg(long, env = "RUNTIME_HOST_MAX_INSTANCES_PER_COMPONENT")]
    max_instances_per_component: Option<u32>,

    /// PEM certificates to trust for TLS to Postgres and MQTT brokers, besides
    /// the system's roots (a private CA).
    #[arg(long, env = "RUNTIME_HOST_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,

    /// The most linear memory one instance may use, in MiB.
    #[arg(
        long,
        default_value_t = 256,
        env = "RUNTIME_HOST_MAX_INSTANCE_MEMORY_MIB"
    )]
    max_instance_memory_mib: usize,

    /// The largest request body a component accepts, in bytes (413 beyond it,
    /// for a declared Content-Length and a chunked body alike).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_REQUEST_BODY_BYTES, env = "RUNTIME_HOST_MAX_REQUEST_BODY_BYTES")]
    max_request_body_bytes: u64,

    /// One component's own request-body limit, `component-id=bytes` (repeatable).
    #[arg(
        long = "component-max-request-body-bytes",
        value_parser = parse_component_limit,
        env = "RUNTIME_HOST_COMPONENT_MAX_REQUEST_BODY_BYTES",
        value_delimiter = ','
    )]
    component_max_request_body_bytes: Vec<(String, u64)>,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Address of the application's HTTP listener.
    #[arg(long, default_value = "127.0.0.1:3000", env = "RUNTIME_HOST_LISTEN")]
    listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics).
    #[arg(
        long,
        default_value = "127.0.0.1:9090",
        env = "RUNTIME_HOST_ADMIN_LISTEN"
    )]
    admin_listen: SocketAddr,

    /// Longest time one request may take, in seconds.
    #[arg(long, default_value_t = 30, env = "RUNTIME_HOST_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: u64,

    /// How long to wait for in-flight requests on shutdown, in seconds.
    #[arg(long, default_value_t = 25, env = "RUNTIME_HOST_DRAIN_TIMEOUT_SECS")]
    drain_timeout_secs: u64,

    /// A client that has not sent a whole request head within this many
    /// seconds is closed (also the longest a kept-alive connection may idle).
    #[arg(long, default_value_t = limits::DEFAULT_HEADER_READ_TIMEOUT.as_secs(), env = "RUNTIME_HOST_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: u64,

    /// Client connections open at once; past it a new one gets 503 and is closed.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS, env = "RUNTIME_HOST_MAX_CONNECTIONS")]
    max_connections: usize,

    /// Requests one instance may serve before it is discarded (1: a fresh
    /// instance per request, Spin's default for WASI 0.2 components).
    #[arg(
        long,
        default_value_t = 1,
        env = "RUNTIME_HOST_MAX_INSTANCE_REUSE_COUNT"
    )]
    max_instance_reuse_count: u32,

    /// Concurrent requests per instance. WASI 0.2 instances serve one request
    /// at a time, so only 1 is meaningful here (kept for parity with `spin up`).
    #[arg(
        long,
        default_value_t = 1,
        env = "RUNTIME_HOST_MAX_INSTANCE_CONCURRENT_REUSE_COUNT"
    )]
    max_instance_concurrent_reuse_count: u32,

    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        env = "RUNTIME_HOST_LOG_FORMAT"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_component_limit(s: &str) -> Result<(String, u64), String> {
    let (id, bytes) = s
        .split_once('=')
        .ok_or_else(|| format!("expected component-id=bytes, got `{s}`"))?;
    let bytes = bytes
        .parse()
        .map_err(|_| format!("`{bytes}` is not a number of bytes"))?;
    Ok((id.to_string(), bytes))
}

fn parse_variable(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got `{s}`"))
}

impl CommonArgs {
    fn settings(&self) -> AppSettings {
        let mut settings = AppSettings::new(&self.manifest);
        settings.components = self.component_ids.clone();
        settings.runtime_config = self.runtime_config_file.clone();
        settings.state_dir = self.state_dir.clone();
        let state_dir = self.state_dir.clone().unwrap_or_else(|| {
            self.manifest
                .parent()
                .map(|p| p.join(".spin"))
                .unwrap_or_else(|| PathBuf::from(".spin"))
        });
        settings.cache_dir = if self.no_cache {
            None
        } else {
            Some(
                self.cache_dir
                    .clone()
                    .unwrap_or_else(|| state_dir.join("compiled")),
            )
        };
        settings.variables = self.variables.clone();
        settings.env = std::env::vars().collect();
        settings.max_instances_per_component = self.max_instances_per_component;
        settings.tls_ca_file = self.tls_ca_file.clone();
        settings.limits.max_request_body_bytes = self.max_request_body_bytes;
        settings.limits.component_max_request_body_bytes = self
            .component_max_request_body_bytes
            .iter()
            .cloned()
            .collect();
        settings.engine = EngineSettings {
            pooling: !self.no_pooling,
            max_instances: self.max_instances,
            max_instance_memory: self.max_instance_memory_mib << 20,
        };
        settings
    }
}

fn init_logging(format: LogFormat) -> anyhow::Result<Telemetry> {
    let format = match format {
        LogFormat::Text => telemetry::LogFormat::Text,
        LogFormat::Json => telemetry::LogFormat::Json,
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "runtime-host".into());
    telemetry::init(format, &service)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("failed to listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupted; shutting down"),
        _ = term => tracing::info!("SIGTERM; shutting down"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Test(args) => test(args).await,
        Command::Compile(args) => {
            let _telemetry = init_logging(LogFormat::Text)?;
            let settings = args.settings();
            App::load(&settings, Metrics::new())?;
            println!(
                "compiled into {}",
                settings
                    .cache_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new("-"))
                    .display()
            );
            Ok(())
        }
    }
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let _telemetry = init_logging(LogFormat::Text)?;
    let mut settings = args.common.settings();
    // Cargo runs a test in its package's folder: the manifest is above it.
    if !settings.manifest.exists() {
        let cwd = std::env::current_dir()?;
        settings.manifest = cwd
            .ancestors()
            .map(|dir| dir.join("spin.toml"))
            .find(|path| path.exists())
            .context("no spin.toml in this folder or above it")?;
    }
    // Compiled dependencies are cached where the application's are.
    if args.common.cache_dir.is_none() && !args.common.no_cache {
        let dir = settings
            .manifest
            .parent()
            .unwrap_or(std::path::Path::new("."));
        settings.cache_dir = Some(dir.join(".spin").join("compiled"));
    }
    let manifest = runtime_host::manifest::Manifest::load(&settings.manifest)?;
    let id = match args.common.component_ids.first() {
        Some(id) => id.clone(),
        None => component_of(&manifest, &args.wasm)?,
    };
    // A store of its own: a test never writes the application's state.
    let state = std::env::temp_dir().join(format!("runtime-host-test-{}", std::process::id()));
    settings.state_dir = Some(state.clone());
    settings.components = vec![id.clone()];
    let (app, command) = App::load_for_command(&settings, Metrics::new(), &id, &args.wasm)?;
    let mut argv = vec![args.wasm.display().to_string()];
    argv.extend(args.args);
    let passed = app.run_command(&command, &argv).await;
    let _ = std::fs::remove_dir_all(&state);
    anyhow::ensure!(passed?, "{} failed", args.wasm.display());
    Ok(())
}

/// The manifest component whose Wasm a test binary is built from: its file
/// name without cargo's `-<hash>` is the component's source file name.
fn component_of(
    manifest: &runtime_host::manifest::Manifest,
    wasm: &std::path::Path,
) -> anyhow::Result<String> {
    let stem = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let crate_name = match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => stem.clone(),
    };
    manifest
        .component
        .iter()
        .find(|(_, decl)| match &decl.source {
            runtime_host::manifest::SourceDecl::Path(path) => path
                .file_stem()
                .is_some_and(|s| s.to_string_lossy() == crate_name),
            runtime_host::manifest::SourceDecl::Remote(_) => false,
        })
        .map(|(id, _)| id.clone())
        .with_context(|| {
            format!(
                "no component of the manifest is built from `{crate_name}` (give --component-id)"
            )
        })
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let _telemetry = init_logging(args.log_format)?;
    anyhow::ensure!(
        args.max_instance_reuse_count >= 1,
        "--max-instance-reuse-count must be at least 1"
    );
    anyhow::ensure!(
        args.max_instance_concurrent_reuse_count == 1,
        "--max-instance-concurrent-reuse-count applies to WASI 0.3 components; 0.2 instances serve one request at a time"
    );
    let mut settings = args.common.settings();
    settings.request_timeout = Duration::from_secs(args.request_timeout_secs);
    settings.max_instance_reuse_count = args.max_instance_reuse_count;
    settings.limits.header_read_timeout = Duration::from_secs(args.header_read_timeout_secs);
    settings.limits.max_connections = args.max_connections;

    let app = App::load(&settings, Metrics::new()).context("failed to load the application")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to bind {}", args.listen))?;
    let admin = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("failed to bind admin {}", args.admin_listen))?;
    let host = runtime_host::start(
        app.clone(),
        listener,
        Some(admin),
        Duration::from_secs(args.drain_timeout_secs),
        shutdown_signal(),
    )
    .await?;

    println!("Serving http://{}", host.addr);
    if let Some(admin) = host.admin_addr {
        println!("Admin http://{admin} (/healthz /readyz /metrics)");
    }
    println!("Available Routes:");
    for route in app.router().routes() {
        println!("  {}: http://{}{}", route.component, host.addr, route.raw);
    }
    host.wait().await;
    Ok(())
}
