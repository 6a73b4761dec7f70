//! Host benchmark: a trivial handler served through `runtime-host`.
//!
//! Starts the release `runtime-host` binary on the test guest component,
//! drives it with keep-alive HTTP/1.1 connections for a fixed time, and
//! prints requests/s, p50/p90/p99 latency, mean instantiation time (from the
//! host's own metrics) and the host's RSS. Each configuration runs in turn:
//! pooling allocator (the default), on-demand allocation, and instance reuse.
//!
//! `make bench` builds and runs it. Options: `--duration-secs N`
//! (default 5), `--connections N` (default 16), `--host-bin PATH`.
//! The load stays on loopback and stops by itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct Options {
    duration: Duration,
    connections: usize,
    host_bin: PathBuf,
}

fn options() -> Options {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut opts = Options {
        duration: Duration::from_secs(5),
        connections: 16,
        host_bin: root.join("target/release/runtime-host"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        match (pair[0].as_str(), pair.get(1)) {
            ("--duration-secs", Some(v)) => {
                opts.duration = Duration::from_secs(v.parse().expect("seconds"))
            }
            ("--connections", Some(v)) => opts.connections = v.parse().expect("a count"),
            ("--host-bin", Some(v)) => opts.host_bin = PathBuf::from(v),
            (flag, _) => panic!("unknown option {flag}"),
        }
    }
    opts
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Host {
    child: Child,
    port: u16,
    admin_port: u16,
}

impl Host {
    fn start(bin: &Path, manifest: &Path, cache: &Path, extra: &[&str]) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let child = Command::new(bin)
            .args(["up", "-f"])
            .arg(manifest)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--cache-dir")
            .arg(cache)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e} (run `make host`)", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "host did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            admin_port,
        }
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .unwrap_or(f64::NAN)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    uri: &str,
) -> bool {
    let req = http::Request::get(uri)
        .header("host", "bench")
        .body(Empty::new())
        .unwrap();
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status().is_success();
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Drive the host for `duration`; returns per-request latencies in µs and the error count.
async fn load(port: u16, connections: usize, duration: Duration) -> (Vec<u32>, usize) {
    load_paths(port, connections, duration, &["/guest/counter"]).await
}

/// [`load`] over several paths, each connection taking them in turn.
async fn load_paths(
    port: u16,
    connections: usize,
    duration: Duration,
    paths: &[&'static str],
) -> (Vec<u32>, usize) {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let paths = paths.to_vec();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0;
            let mut next = connection;
            while Instant::now() < deadline {
                let path = paths[next % paths.len()];
                next += 1;
                let started = Instant::now();
                if get(&mut sender, path).await {
                    latencies.push(started.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, e) = task.await.unwrap();
        all.extend(latencies);
        errors += e;
    }
    (all, errors)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn mean_instantiation_us(admin_port: u16) -> Option<f64> {
    let stream = TcpStream::connect(("127.0.0.1", admin_port)).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let body = sender
        .send_request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let sum = value("runtime_host_instantiation_duration_seconds_sum")?;
    let count = value("runtime_host_instantiation_duration_seconds_count")?;
    (count > 0.0).then(|| sum / count * 1e6)
}

#[tokio::main]
async fn main() {
    let opts = options();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let wasm = root.join("target/wasm32-wasip2/component/host_test_guest.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make components`",
        wasm.display()
    );
    let dir = std::env::temp_dir().join(format!("runtime-host-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"bench\"\n[[trigger.http]]\nroute = \"/guest/...\"\ncomponent = \"guest\"\n[component.guest]\nsource = \"{}\"\n",
            wasm.display()
        ),
    )
    .unwrap();
    let cache = root.join("target/bench-compiled");

    println!(
        "runtime-host benchmark: GET /guest/counter (trivial handler), {} keep-alive connections, {} s per mode, {} cores shared by host and load generator",
        opts.connections,
        opts.duration.as_secs(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9} {:>8} {:>14} {:>10} {:>10}",
        "mode",
        "req/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "errors",
        "instantiate µs",
        "RSS MiB",
        "peak MiB"
    );
    let modes: [(&str, &[&str]); 3] = [
        ("fresh instance, pooling (default)", &[]),
        ("fresh instance, on-demand alloc", &["--no-pooling"]),
        (
            "instance reuse (1000 requests)",
            &["--max-instance-reuse-count", "1000"],
        ),
    ];
    for (name, extra) in modes {
        let host = Host::start(&opts.host_bin, &manifest, &cache, extra);
        // Warm up: connections, caches, the first instances.
        let _ = load(host.port, opts.connections, Duration::from_millis(500)).await;
        let started = Instant::now();
        let (mut latencies, errors) = load(host.port, opts.connections, opts.duration).await;
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let (rss, peak) = host.rss_mib();
        let instantiate = mean_instantiation_us(host.admin_port)
            .await
            .map(|us| format!("{us:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<34} {:>10.0} {:>9} {:>9} {:>9} {:>8} {:>14} {:>10.1} {:>10.1}",
            name,
            latencies.len() as f64 / elapsed,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.90),
            percentile(&latencies, 0.99),
            errors,
            instantiate,
            rss,
            peak
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    five_components(&opts, &root).await;
}

/// The whole application (the project's spin.toml, five components): the
/// host's memory at rest and under load on every service's routes.
async fn five_components(opts: &Options, root: &Path) {
    const PATHS: [&str; 6] = [
        "/api/v1/data/health",
        "/api/v1/data/clock",
        "/api/v1/symbols/health",
        "/api/v1/ml/health",
        "/api/v1/execution/health",
        "/api/v1/notifications/health",
    ];
    println!(
        "\nthe five components (spin.toml): {} connections over {} routes (each service's health, the data clock), {} s",
        opts.connections,
        PATHS.len(),
        opts.duration.as_secs()
    );
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>8} {:>12} {:>12} {:>10}",
        "mode", "req/s", "p50 µs", "p99 µs", "errors", "rest MiB", "load MiB", "peak MiB"
    );
    let state = std::env::temp_dir().join(format!("runtime-host-bench-app-{}", std::process::id()));
    let cache = root.join("target/bench-compiled");
    let modes: [(&str, &[&str]); 2] = [
        ("fresh instance (Spin's default)", &[]),
        (
            "instance reuse (1000 requests)",
            &["--max-instance-reuse-count", "1000"],
        ),
    ];
    for (name, extra) in modes {
        let mut args = vec!["--state-dir", state.to_str().unwrap()];
        args.extend_from_slice(extra);
        let host = Host::start(&opts.host_bin, &root.join("spin.toml"), &cache, &args);
        let _ = load_paths(host.port, 1, Duration::from_millis(300), &PATHS).await;
        let (rest, _) = host.rss_mib();
        let started = Instant::now();
        let (mut latencies, errors) =
            load_paths(host.port, opts.connections, opts.duration, &PATHS).await;
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort_unstable();
        let (under_load, peak) = host.rss_mib();
        println!(
            "{:<34} {:>10.0} {:>9} {:>9} {:>8} {:>12.1} {:>12.1} {:>10.1}",
            name,
            latencies.len() as f64 / elapsed,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            errors,
            rest,
            under_load,
            peak
        );
    }
    let _ = std::fs::remove_dir_all(&state);
}
