//! Test support: start the host as a library on `127.0.0.1:0` with real
//! components, a real `redis-server`, and small local HTTP servers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime_host::{App, AppSettings, Metrics, RunningHost};
use tokio::net::TcpListener;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A component built by `make components` (profile `component`, wasm32-wasip2).
pub fn component_wasm(crate_name: &str) -> PathBuf {
    let path = workspace_root()
        .join("target/wasm32-wasip2/component")
        .join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(
        path.exists(),
        "{} is missing: build the components first (`make components`)",
        path.display()
    );
    path
}

/// A manifest for the test guest, written into `dir`, with extra TOML for the component.
pub fn guest_manifest(dir: &Path, component_extra: &str, app_extra: &str) -> PathBuf {
    let wasm = component_wasm("host-test-guest");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "host-test"
{app_extra}

[[trigger.http]]
route = "/guest/..."
component = "guest"

[component.guest]
source = "{wasm}"
{component_extra}
"#,
        wasm = wasm.display()
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A manifest of the test guest's own shape: `triggers_and_components` is
/// written after the `[application]` table, with `{guest}` standing for the
/// guest's Wasm path.
pub fn guest_app(dir: &Path, name: &str, triggers_and_components: &str) -> PathBuf {
    let wasm = component_wasm("host-test-guest");
    let text = format!(
        "spin_manifest_version = 2\n[application]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n{}",
        triggers_and_components.replace("{guest}", &wasm.display().to_string())
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub fn settings(manifest: &Path, state_dir: &Path) -> AppSettings {
    let mut settings = AppSettings::new(manifest);
    settings.state_dir = Some(state_dir.to_path_buf());
    settings.cache_dir = Some(cache_dir());
    settings.request_timeout = Duration::from_secs(5);
    settings.engine.max_instances = 50;
    settings.engine.max_instance_memory = 64 << 20;
    // The tests' replay day: the last of the bundled S&P data, which their
    // dates and figures are written for (`make up`'s default is the day
    // before, so that its first cycle's orders have a bar to fill on).
    let root = workspace_root();
    if manifest == root.join("spin.toml") || manifest == root.join("spin.pods.toml") {
        settings
            .variables
            .push(("replay_date".into(), TEST_REPLAY_DATE.into()));
    }
    settings
}

/// See [`settings`].
pub const TEST_REPLAY_DATE: &str = "2010-08-20";

/// Compiled components are shared by the tests of one run, as by restarts of a host.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target/test-compiled")
}

pub async fn start(settings: &AppSettings) -> RunningHost {
    try_start(settings).await.unwrap()
}

pub async fn try_start(settings: &AppSettings) -> anyhow::Result<RunningHost> {
    try_start_on(settings, "127.0.0.1:0".parse().unwrap()).await
}

/// A host on a given address (a restart on the port it had).
pub async fn start_on(settings: &AppSettings, addr: SocketAddr) -> RunningHost {
    try_start_on(settings, addr).await.unwrap()
}

pub async fn try_start_on(settings: &AppSettings, addr: SocketAddr) -> anyhow::Result<RunningHost> {
    let app = App::load(settings, Metrics::new())?;
    let listener = TcpListener::bind(addr).await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    runtime_host::start(
        app,
        listener,
        Some(admin),
        Duration::from_secs(5),
        std::future::pending(),
    )
    .await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub fn url(host: &RunningHost, path: &str) -> String {
    format!("http://{}{}", host.addr, path)
}

pub async fn get(host: &RunningHost, path: &str) -> (u16, String) {
    let resp = client().get(url(host, path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// GET a JSON body.
pub async fn get_json(host: &RunningHost, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = get(host, path).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, json)
}

/// POST a JSON body, read a JSON answer.
pub async fn post_json(
    host: &RunningHost,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = client()
        .post(url(host, path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// `PUT /api/v1/data/clock` with the admin token: the clock it answers.
pub async fn put_clock(
    base: &str,
    admin_token: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let resp = client()
        .put(format!("{base}/api/v1/data/clock"))
        .header("x-admin-token", admin_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{body}");
    resp.json().await.unwrap()
}

pub async fn metrics(host: &RunningHost) -> String {
    let admin = host.admin_addr.unwrap();
    client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of one series in Prometheus text, `0` if absent.
/// Prometheus' own checker accepts this exposition (`promtool` from apt's `prometheus`).
pub fn promtool_check(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .expect("promtool is installed (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "promtool check metrics failed: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    durable: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A throwaway Redis: nothing written to disk.
    pub fn start() -> Self {
        Self::spawn(free_port(), tempfile::tempdir().unwrap(), false)
    }

    /// A Redis that loses nothing it acknowledged (append-only file, fsync
    /// on every write), so it can be killed and restarted by a test.
    pub fn start_durable() -> Self {
        Self::spawn(free_port(), tempfile::tempdir().unwrap(), true)
    }

    fn spawn(port: u16, dir: tempfile::TempDir, durable: bool) -> Self {
        let persistence: &[&str] = if durable {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(persistence)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        wait_for_port(port, Duration::from_secs(10), "redis-server");
        Self {
            port,
            child,
            durable,
            dir,
        }
    }

    /// SIGKILL: Redis is gone at once, mid-command.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start it again on the same port, from the same files.
    pub fn restart(self) -> Self {
        let mut this = self;
        this.kill();
        let (port, durable) = (this.port, this.durable);
        let dir = std::mem::replace(&mut this.dir, tempfile::tempdir().unwrap());
        Self::spawn(port, dir, durable)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// A Spin runtime config binding the `default` key-value store to `redis`, written into `dir`.
pub fn redis_runtime_config(dir: &Path, redis: &RedisServer) -> PathBuf {
    let path = dir.join("runtime-config.toml");
    let text = format!(
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until a process started by a test accepts connections on `port`.
pub fn wait_for_port(port: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a [`Recorder`] server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub target: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the responder answered.
    pub status: u16,
}

/// What a [`Recorder`] answers: status and body for a path and query.
pub type Responder = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

/// A local HTTP server that records every request and answers with a responder
/// (`pong` by default): a stand-in for a third-party service.
pub struct Recorder {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    pub async fn start() -> Self {
        Self::serve(Arc::new(|_| (200, "pong".to_string()))).await
    }

    pub async fn serve(responder: Responder) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (record, responder) = (record.clone(), responder.clone());
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (record, responder) = (record.clone(), responder.clone());
                        async move {
                            let target = req
                                .uri()
                                .path_and_query()
                                .map(|pq| pq.to_string())
                                .unwrap_or_default();
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let body = http_body_util::BodyExt::collect(req.into_body())
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let (status, answer) = responder(&target);
                            record.lock().unwrap().push(Seen {
                                target: target.clone(),
                                path,
                                headers,
                                body,
                                status,
                            });
                            let body = answer;
                            let mut resp = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(body),
                            ));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            // A 429 asks for one second, as a rate-limited API would.
                            if status == 429 {
                                resp.headers_mut().insert(
                                    http::header::RETRY_AFTER,
                                    http::HeaderValue::from_static("1"),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// The built `runtime-host` binary serving the project's spin.toml on its own
/// port, as a separate process (restart and crash tests, several replicas).
pub struct HostProcess {
    pub base: String,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin: String,
    child: Child,
    /// Where the host's stderr (its log) goes.
    log: PathBuf,
}

impl HostProcess {
    /// Start `runtime-host up` with `args` (components, variables, stores) and
    /// wait until `ready_path` answers.
    pub async fn start(state_dir: &Path, args: &[String], ready_path: &str) -> Self {
        Self::start_with_env(state_dir, args, ready_path, &[]).await
    }

    /// [`start`](Self::start) with environment variables for the host.
    pub async fn start_with_env(
        state_dir: &Path,
        args: &[String],
        ready_path: &str,
        env: &[(&str, String)],
    ) -> Self {
        let manifest = workspace_root().join("spin.toml");
        Self::start_manifest(&manifest, state_dir, args, ready_path, env).await
    }

    /// [`start_with_env`](Self::start_with_env) with another manifest.
    pub async fn start_manifest(
        manifest: &Path,
        state_dir: &Path,
        args: &[String],
        ready_path: &str,
        env: &[(&str, String)],
    ) -> Self {
        let port = free_port();
        let admin_port = free_port();
        std::fs::create_dir_all(state_dir).unwrap();
        let log = state_dir.join(format!("host-{port}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_runtime-host"))
            .arg("up")
            .arg("-f")
            .arg(manifest)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        while client()
            .get(format!("{base}{ready_path}"))
            .send()
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the host exited before serving: {status}");
            }
            assert!(Instant::now() < deadline, "the host did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            base,
            admin: format!("http://127.0.0.1:{admin_port}"),
            child,
            log,
        }
    }

    /// What the host has logged so far, without terminal colours.
    pub fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut plain = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // An ANSI escape: `ESC [ ... letter`.
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// The host's resident memory, in KiB (`VmRSS` of /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// SIGTERM, and wait for a clean exit (spans flushed, requests drained).
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "the host exited with {exit}");
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The identity provider of `istio/security.yaml`'s RequestAuthentication,
/// acted out: its issuer, audience and JWKS URI as that file names them, and
/// a key of ours in place of its signing key.
pub struct TestIdp {
    pub key: daytrade_contract::auth::RsaPrivateKey,
    /// The JWKS document it publishes.
    pub jwks: String,
}

pub const IDP_ISSUER: &str = "https://id.example.com/";
pub const IDP_AUDIENCE: &str = "daytrade";
pub const IDP_JWKS_URI: &str = "https://id.example.com/.well-known/jwks.json";

impl TestIdp {
    /// A token for `role`, valid for the next minute, with these claims
    /// changed (`iss`, `aud`, `exp`, ...).
    pub fn token(&self, role: &str, changes: serde_json::Value) -> String {
        self.token_signed_by(&self.key, role, changes)
    }

    pub fn token_signed_by(
        &self,
        key: &daytrade_contract::auth::RsaPrivateKey,
        role: &str,
        changes: serde_json::Value,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut claims = serde_json::json!({
            "sub": "carol", "role": role, "iss": IDP_ISSUER, "aud": IDP_AUDIENCE, "exp": now + 60,
        });
        for (name, value) in changes.as_object().into_iter().flatten() {
            claims[name] = value.clone();
        }
        daytrade_contract::auth::sign_rs256(key, "idp-1", &claims)
    }
}

/// An RSA key from a fixed seed (deterministic, so failures reproduce).
pub fn rsa_key(seed: u64) -> daytrade_contract::auth::RsaPrivateKey {
    use rand::SeedableRng;
    daytrade_contract::auth::RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(seed), 2048)
        .unwrap()
}

pub fn test_idp() -> &'static TestIdp {
    static IDP: std::sync::OnceLock<TestIdp> = std::sync::OnceLock::new();
    IDP.get_or_init(|| {
        let key = rsa_key(7);
        let jwks = serde_json::json!({
            "keys": [daytrade_contract::auth::jwk(&key.to_public_key(), "idp-1")]
        })
        .to_string();
        TestIdp { key, jwks }
    })
}

/// Run `program` as the unprivileged `user` when the tests run as root (as
/// CI does): PostgreSQL refuses to run as root.
fn as_unprivileged(program: &Path, user: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", user, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Debian's PostgreSQL server programs (`/usr/lib/postgresql/<version>/bin`).
fn postgres_bin(program: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql)")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin").join(program)))
        .filter(|path| path.exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL's server programs are installed")
}

/// A PostgreSQL server of its own (initdb into a temporary directory,
/// trust authentication, loopback only, fsync off), stopped on drop.
pub struct PostgresServer {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PostgresServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that also speaks TLS, with a certificate of `ca`'s for
    /// 127.0.0.1 (clients choose: `sslmode=disable` stays in the clear).
    pub fn start_with_tls(ca: &TestCa) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(ca: Option<&TestCa>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut tls = Vec::new();
        if let Some(ca) = ca {
            let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::copy(&ca.server_cert, &cert).unwrap();
            std::fs::copy(&ca.server_key, &key).unwrap();
            let owner_only = std::os::unix::fs::PermissionsExt::from_mode(0o600);
            std::fs::set_permissions(&key, owner_only).unwrap();
            tls = vec![
                "-c".to_string(),
                "ssl=on".into(),
                "-c".into(),
                format!("ssl_cert_file={}", cert.display()),
                "-c".into(),
                format!("ssl_key_file={}", key.display()),
            ];
        }
        // The server runs as `postgres` when the tests run as root: it must
        // own the directory (and the key, which only it may read).
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status();
        let initdb = as_unprivileged(&postgres_bin("initdb"), "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(initdb.success(), "initdb failed");
        let port = free_port();
        let child = as_unprivileged(&postgres_bin("postgres"), "postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(&tls)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        wait_for_port(port, Duration::from_secs(20), "postgres");
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    /// A libpq-style connection string for the `postgres` database.
    pub fn address(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // SIGTERM through runuser would leave the server running: signal it directly.
        let _ = Command::new("pkill")
            .args(["-INT", "-f", &format!("postgres.*-p {}", self.port)])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A mosquitto broker on a free loopback port that knows one user
/// (`desk` / `secret`) and refuses anonymous clients; killed on drop.
pub struct MosquittoServer {
    pub port: u16,
    /// The TLS listener's port (listening only when started with a CA).
    pub tls_port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl MosquittoServer {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A broker with a second listener, `tls_port`, speaking TLS with a
    /// certificate of `ca`'s for 127.0.0.1.
    pub fn start_with_tls(ca: &TestCa) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(ca: Option<&TestCa>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let passwords = dir.path().join("passwords");
        let made = Command::new(sbin("mosquitto_passwd"))
            .args(["-c", "-b"])
            .arg(&passwords)
            .args(["desk", "secret"])
            .status()
            .expect("mosquitto_passwd runs (apt-get install mosquitto)");
        assert!(made.success());
        let port = free_port();
        let tls_port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nuser root\n",
            passwords.display()
        );
        if let Some(ca) = ca {
            conf.push_str(&format!(
                "listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                ca.server_cert.display(),
                ca.server_key.display()
            ));
        }
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(&config, conf).unwrap();
        let child = Command::new(sbin("mosquitto"))
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is installed (apt-get install mosquitto)");
        wait_for_port(port, Duration::from_secs(10), "mosquitto");
        if ca.is_some() {
            wait_for_port(tls_port, Duration::from_secs(10), "mosquitto (TLS)");
        }
        Self {
            port,
            tls_port,
            child,
            _dir: dir,
        }
    }
}

/// A certificate authority of a test's own, made with `openssl`: its
/// certificate (for the host's `--tls-ca-file`) and a server certificate it
/// signed for `127.0.0.1` and `localhost`, with the server's key.
pub struct TestCa {
    pub cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl is installed (apt-get install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=daytrade test CA"],
                &["-addext", "basicConstraints=critical,CA:TRUE"],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
                &["-subj", "/CN=localhost"],
            ]
            .concat(),
        );
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self {
            cert: path("ca.pem"),
            server_cert: path("server.pem"),
            server_key: path("server.key"),
            _dir: dir,
        }
    }
}

impl Drop for MosquittoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program Debian installs in /usr/sbin, which is not on every user's PATH.
fn sbin(program: &str) -> PathBuf {
    let path = Path::new("/usr/sbin").join(program);
    if path.exists() {
        path
    } else {
        PathBuf::from(program)
    }
}

/// A subscriber to `topic` on `broker`'s plain listener (as `desk`), once
/// the broker has acknowledged the subscription: each message's topic and
/// payload arrive on the receiver.
pub async fn mqtt_subscriber(
    broker: &MosquittoServer,
    topic: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
    let mut options = MqttOptions::new(
        format!("subscriber-{}", free_port()),
        "127.0.0.1",
        broker.port,
    );
    options.set_credentials("desk", "secret");
    let (subscriber, mut events) = AsyncClient::new(options, 16);
    subscriber.subscribe(topic, QoS::ExactlyOnce).await.unwrap();
    let (received_tx, received) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // Holding the client keeps the connection.
        let _subscriber = subscriber;
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = events.poll().await {
            match event {
                Event::Incoming(Incoming::SubAck(_)) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Event::Incoming(Incoming::Publish(p)) => {
                    let _ = received_tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("subscribed")
        .unwrap();
    received
}

/// notification-service's delivery passes (`POST /deliver`, with a trader
/// key) at `base` until nothing is pending; each pass's answer is checked
/// against the WIT record.
pub async fn deliver_all(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = client()
            .post(format!("{base}/api/v1/notifications/deliver"))
            .bearer_auth("dev-trader-key")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let pass: serde_json::Value = resp.json().await.unwrap();
        daytrade_contract::wit_check::assert_projects(&pass, "notifications", "delivery-pass");
        if pass["pending"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "still pending: {pass}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
