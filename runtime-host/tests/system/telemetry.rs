//! Spans are exported over OTLP to a real collector (rotel, from PyPI) and
//! link every hop: caller → host request span → chained component's span.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// The `rotel-agent` binary of the `rotel` Python package.
fn rotel_agent() -> std::path::PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the rotel package is installed (pip install rotel)"
    );
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[derive(Debug, Default, Clone)]
struct ExportedSpan {
    trace_id: String,
    parent_id: String,
    id: String,
    name: String,
}

/// Spans from rotel's detailed debug log.
fn parse_spans(log: &str) -> Vec<ExportedSpan> {
    let mut spans: Vec<ExportedSpan> = Vec::new();
    for line in log.lines() {
        let line = line.trim();
        if line.starts_with("Span #") {
            spans.push(ExportedSpan::default());
            continue;
        }
        let Some(span) = spans.last_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "Trace ID" => span.trace_id = value,
            "Parent ID" => span.parent_id = value,
            "ID" => span.id = value,
            "Name" if span.name.is_empty() => span.name = value,
            _ => {}
        }
    }
    spans
}

/// A rotel collector printing every span it receives to `log`.
struct Collector {
    child: std::process::Child,
    log: std::path::PathBuf,
    port: u16,
}

impl Collector {
    fn start(dir: &std::path::Path) -> Self {
        let log = dir.join("rotel.log");
        let port = free_port();
        let child = Command::new(rotel_agent())
            .args(["start", "--exporter", "blackhole", "--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed"])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{port}")])
            .args([
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(20), "rotel");
        Self { child, log, port }
    }

    /// The spans of `trace_id` once at least `min` have arrived (or 10 s passed).
    fn spans(&mut self, trace_id: &str, min: usize, service: &str) -> Vec<ExportedSpan> {
        let mut spans = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            spans = parse_spans(&log)
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if spans.len() >= min && log.contains(service) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        spans
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_trading_cycle_is_one_trace_across_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path());
    let mut host = HostProcess::start_with_env(
        &dir.path().join("state"),
        &[],
        "/api/v1/execution/health",
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", collector.port),
            ),
            ("OTEL_SERVICE_NAME", "cycle-trace".to_string()),
        ],
    )
    .await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let resp = client()
        .post(format!("{}/api/v1/execution/cycle", host.base))
        .bearer_auth("dev-trader-key")
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    host.terminate();

    let spans = collector.spans(trace_id, 6, "cycle-trace");
    let root = spans
        .iter()
        .find(|s| s.parent_id == caller_span)
        .unwrap_or_else(|| panic!("no span continues the caller's: {spans:?}"));
    assert_eq!(root.name, "POST execution-service");
    // Every span hangs off the cycle's tree, and every service took part.
    let ids: Vec<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    for span in &spans {
        assert!(
            span.parent_id == caller_span || ids.contains(&span.parent_id.as_str()),
            "{span:?} is outside the cycle's tree"
        );
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "GET symbol-service",
        "POST ml-service",
        // Typed calls, spans of the same trace: the data-service composed
        // into symbol-service (the screening's closes), into ml-service (the
        // features) and into execution-service (the market view of the
        // orders).
        "data-service closes",
        "data-service batch-features",
        "data-service batch-fetch",
    ] {
        assert!(
            names.contains(&expected),
            "no `{expected}` span in {names:?}"
        );
    }
    // The clock is read once by the cycle (its predictions and orders) and
    // once by the screening it asks for.
    let clocks = names.iter().filter(|n| **n == "data-service clock").count();
    assert_eq!(clocks, 2, "{names:?}");
}

#[tokio::test]
async fn request_spans_are_exported_over_otlp_and_linked_across_chained_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    let manifest = guest_manifest(
        dir.path(),
        "allowed_outbound_hosts = [\"http://guest.spin.internal\"]",
        "",
    );
    let port = free_port();
    let mut host = Command::new(env!("CARGO_BIN_EXE_runtime-host"))
        .args(["up", "-f"])
        .arg(&manifest)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--cache-dir")
        .arg(cache_dir())
        .args(["--max-instances", "20"])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", collector.port),
        )
        .env("OTEL_SERVICE_NAME", "trace-test")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    while client()
        .get(format!("{base}/guest/counter"))
        .send()
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline + Duration::from_secs(40),
            "host did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let resp = client()
        .get(format!(
            "{base}/guest/fetch?url=http://guest.spin.internal/guest/headers"
        ))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let inner: serde_json::Value = resp.json().await.unwrap();

    // SIGTERM: the host flushes its spans on the way out.
    Command::new("kill")
        .args(["-TERM", &host.id().to_string()])
        .status()
        .unwrap();
    assert!(host.wait().unwrap().success());

    let spans = collector.spans(trace_id, 2, "trace-test");

    let outer = spans
        .iter()
        .find(|s| s.parent_id == caller_span)
        .unwrap_or_else(|| panic!("no span continues the caller's: {spans:?}"));
    let chained = spans
        .iter()
        .find(|s| s.parent_id == outer.id)
        .unwrap_or_else(|| panic!("no span is a child of {}: {spans:?}", outer.id));
    assert_eq!(outer.name, "GET guest");
    // The component saw its own span as the parent of what it does.
    assert_eq!(
        inner["traceparent"],
        format!("00-{trace_id}-{}-01", chained.id),
        "{inner}"
    );
}
