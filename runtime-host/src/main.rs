//! `runtime-host`: run a Spin application on Wasmtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use runtime_host::engine::EngineSettings;
use runtime_host::telemetry::{self, Telemetry};
use runtime_host::{App, AppSettings, Metrics};
use tokio::net::TcpListener;

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
}

#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    manifest: PathBuf,

    /// Run only this component (repeatable); all components when absent.
    #[arg(short = 'c', long = "component-id")]
    component_ids: Vec<String>,

    /// Spin-format runtime config (key-value stores, variable providers).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,

    /// Directory for the default key-value store [default: <manifest dir>/.spin].
    #[arg(long)]
    state_dir: Option<PathBuf>,

    /// Directory for compiled components [default: <state dir>/compiled].
    #[arg(long, env = "RUNTIME_HOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// Do not cache compiled components.
    #[arg(long)]
    no_cache: bool,

    /// Set an application variable (repeatable): `name=value`.
    #[arg(long = "variable", value_parser = parse_variable)]
    variables: Vec<(String, String)>,

    /// Allocate instances on demand instead of from a pre-reserved pool.
    #[arg(long)]
    no_pooling: bool,

    /// How many instances may be alive at once (pooling allocator).
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,

    /// The most linear memory one instance may use, in MiB.
    #[arg(long, default_value_t = 256)]
    max_instance_memory_mib: usize,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,

    /// Address of the application's HTTP listener.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// Address of the admin listener (/healthz, /readyz, /metrics).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,

    /// Longest time one request may take, in seconds.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,

    /// How long to wait for in-flight requests on shutdown, in seconds.
    #[arg(long, default_value_t = 25)]
    drain_timeout_secs: u64,

    /// Requests one instance may serve before it is discarded (1: a fresh
    /// instance per request, Spin's default for WASI 0.2 components).
    #[arg(long, default_value_t = 1)]
    max_instance_reuse_count: u32,

    /// Concurrent requests per instance. WASI 0.2 instances serve one request
    /// at a time, so only 1 is meaningful here (kept for parity with `spin up`).
    #[arg(long, default_value_t = 1)]
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
