//! ml-service benchmark: the same models and inputs (each version's golden
//! rows) run by tract natively, by tract inside the component through the
//! host, and by onnxruntime (Python, `training/bench_onnxruntime.py`, when
//! installed) on the shipped file and on skl2onnx's tree-op form of the same
//! fit. Per version: load time, one row, a batch of 100.
//!
//! In the component, two loading modes: a fresh instance per request (Spin's
//! default: every request parses and optimises its model) and instances reused
//! (`--max-instance-reuse-count`: the first request of an instance pays).
//!
//! `make bench` runs it.

use std::time::{Duration, Instant};

use forecasting::{Model, Registry};
use serde_json::{Value, json};

mod support;

use support::root;

fn golden(version: &str) -> Vec<Vec<f64>> {
    let path = root().join(format!(
        "components/ml-service/models/{version}/golden.json"
    ));
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_value(golden["inputs"].clone()).unwrap()
}

fn tiled(rows: &[Vec<f64>], n: usize) -> Vec<Vec<f64>> {
    rows.iter().cycle().take(n).cloned().collect()
}

fn mean<F: FnMut()>(n: u32, mut run: F) -> Duration {
    run();
    let started = Instant::now();
    for _ in 0..n {
        run();
    }
    started.elapsed() / n
}

fn native(version: &str) -> (Duration, Duration, Duration) {
    let v = Registry::embedded().unwrap().version(version).unwrap();
    let snapshot = v.snapshots.last().unwrap();
    let bytes = v.file(snapshot).unwrap();
    let load = mean(20, || {
        Model::load(&snapshot.file, bytes, v.features.len(), &v.members).unwrap();
    });
    let model = Model::load(&snapshot.file, bytes, v.features.len(), &v.members).unwrap();
    let rows = golden(version);
    let one = vec![rows[0].clone()];
    let hundred = tiled(&rows, 100);
    let row = mean(2000, || {
        model.predict(&one).unwrap();
    });
    let batch = mean(300, || {
        model.predict(&hundred).unwrap();
    });
    (load, row, batch)
}

async fn start(reuse: u32) -> (runtime_host::RunningHost, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut settings = support::settings(state.path());
    settings.components = vec!["data-service".into(), "ml-service".into()];
    settings.max_instance_reuse_count = reuse;
    settings.engine.max_instance_memory = 128 << 20;
    (support::serve(&settings).await, state)
}

/// Client-side mean latency and the component's own mean inference and load times.
struct InComponent {
    request: Duration,
    inference: Duration,
    load: Duration,
}

async fn through_host(
    client: &reqwest::Client,
    base: &str,
    version: &str,
    rows: &[Vec<f64>],
    n: u32,
) -> InComponent {
    let rows: Vec<Value> = rows
        .iter()
        .map(|f| json!({ "symbol": "BENCH", "features": f }))
        .collect();
    let body = json!({ "rows": rows, "model_version": version });
    let (mut request, mut inference, mut load) = (Duration::ZERO, 0u64, 0u64);
    for i in 0..=n {
        let started = Instant::now();
        let resp = client
            .post(format!("{base}/api/v1/ml/batch-predict"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        if i == 0 {
            continue; // warm-up
        }
        request += started.elapsed();
        inference += answer["latency_us"].as_u64().unwrap();
        load += answer["load_us"].as_u64().unwrap();
    }
    InComponent {
        request: request / n,
        inference: Duration::from_micros(inference / u64::from(n)),
        load: Duration::from_micros(load / u64::from(n)),
    }
}

fn onnxruntime() -> Vec<Value> {
    let out = std::process::Command::new("python3")
        .arg(root().join("training/bench_onnxruntime.py"))
        .arg(root().join("components/ml-service/models"))
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        _ => {
            println!(
                "onnxruntime: not installed (pip install -r training/requirements.txt); skipped"
            );
            Vec::new()
        }
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let wasm = root().join("target/wasm32-wasip2/component/ml_service.wasm");
    println!(
        "ml_service.wasm: {:.1} MB",
        std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
    );
    let started = Instant::now();
    let (fresh, _state) = start(1).await;
    println!(
        "host start with ml-service (compile or load from cache): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let (reused, _state2) = start(1000).await;
    let client = reqwest::Client::new();
    let ort = onnxruntime();
    println!();
    println!(
        "{:<4} {:<34} {:>10} {:>12} {:>14}",
        "ver", "runner", "load ms", "1 row µs", "100 rows µs"
    );
    for version in ["v1", "v2"] {
        let (load, row, batch) = native(version);
        println!(
            "{version:<4} {:<34} {:>10.2} {:>12.1} {:>14.1}",
            "tract native",
            load.as_secs_f64() * 1e3,
            us(row),
            us(batch)
        );
        let rows = golden(version);
        for (mode, host) in [("fresh instance", &fresh), ("reused instance", &reused)] {
            let base = format!("http://{}", host.addr);
            let one = through_host(&client, &base, version, &rows[..1], 200).await;
            let hundred = through_host(&client, &base, version, &tiled(&rows, 100), 100).await;
            println!(
                "{version:<4} {:<34} {:>10.2} {:>12.1} {:>14.1}",
                format!("tract in component, {mode}"),
                one.load.as_secs_f64() * 1e3,
                us(one.inference),
                us(hundred.inference)
            );
            println!(
                "{version:<4} {:<34} {:>10} {:>12.1} {:>14.1}",
                format!("  whole request, {mode}"),
                "",
                us(one.request),
                us(hundred.request)
            );
        }
        for o in ort.iter().filter(|o| o["version"] == version) {
            println!(
                "{version:<4} {:<34} {:>10.2} {:>12.1} {:>14.1}",
                format!(
                    "onnxruntime {}, {}",
                    o["onnxruntime"].as_str().unwrap_or("?"),
                    o["form"].as_str().unwrap_or("?")
                ),
                o["load_ms"].as_f64().unwrap(),
                o["row_us"].as_f64().unwrap(),
                o["batch100_us"].as_f64().unwrap()
            );
        }
    }
    fresh.shutdown().await;
    reused.shutdown().await;
}
