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

#[tokio::test]
async fn request_spans_are_exported_over_otlp_and_linked_across_chained_calls() {
    let dir = tempfile::tempdir().unwrap();
    let collector_log = dir.path().join("rotel.log");
    let http_port = free_port();
    let mut collector = Command::new(rotel_agent())
        .args(["start", "--exporter", "blackhole", "--debug-log", "traces"])
        .args(["--debug-log-verbosity", "detailed"])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
        .args([
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(std::fs::File::create(&collector_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        assert!(Instant::now() < deadline, "rotel did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

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
            format!("http://127.0.0.1:{http_port}"),
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

    let mut spans = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let log = std::fs::read_to_string(&collector_log).unwrap_or_default();
        spans = parse_spans(&log)
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect();
        if spans.len() >= 2 && log.contains("trace-test") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = collector.kill();
    let _ = collector.wait();

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
