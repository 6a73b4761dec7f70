//! What the in-process benchmarks share: where the workspace is, settings
//! for the project's `spin.toml`, and a host serving them on a free port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runtime_host::{App, AppSettings, Metrics, RunningHost};
use tokio::net::TcpListener;

/// The workspace root (where `spin.toml` is).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The project's `spin.toml`, its precompiled components cached for the
/// benchmarks, state in `state`.
pub fn settings(state: &Path) -> AppSettings {
    let mut settings = AppSettings::new(root().join("spin.toml"));
    settings.state_dir = Some(state.to_path_buf());
    settings.cache_dir = Some(root().join("target/bench-compiled"));
    settings
}

/// Serve `settings` on `127.0.0.1:0` (no admin port).
pub async fn serve(settings: &AppSettings) -> RunningHost {
    let app = App::load(settings, Metrics::new()).expect("application loads");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    runtime_host::start(
        app,
        listener,
        None,
        Duration::from_secs(5),
        std::future::pending(),
    )
    .await
    .unwrap()
}
