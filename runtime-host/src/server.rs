//! The listeners: the application's HTTP trigger and the admin port
//! (`/healthz`, `/readyz`, `/metrics`), and graceful shutdown: on the
//! shutdown signal both stop accepting, `/readyz` turns 503, and in-flight
//! requests are finished (up to the drain timeout) before the host exits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::Metrics;
use crate::app::App;
use crate::engine::EPOCH_TICK;

/// A running host: its bound addresses and how to stop it.
#[derive(Debug)]
pub struct RunningHost {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub app: Arc<App>,
    shutdown: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl RunningHost {
    /// Begin a graceful shutdown and wait for it to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.done.await;
    }

    /// Wait until the host has stopped (after a shutdown signal).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Start serving `app` on `listener` (and the admin port on `admin`), stopping
/// gracefully when `signal` completes.
pub async fn start(
    app: Arc<App>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    drain_timeout: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<RunningHost> {
    let addr = listener.local_addr()?;
    let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
    let (shutdown, stop) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(true));

    // The epoch ticker: the clock request deadlines are checked against. It runs on
    // its own thread so that guests busy on every runtime thread cannot stop it.
    let engine = app.engine().clone();
    let (ticker_stop, ticker_rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                ticker_rx.recv_timeout(EPOCH_TICK)
            {
                engine.increment_epoch();
            }
        })?;

    let signal_tx = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        let _ = signal_tx.send(true);
    });

    if let Some(admin) = admin {
        let app = app.clone();
        let ready = ready.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                let ready = ready.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        admin_response(&app, &ready, req.uri().path()).await,
                    )
                }
            };
            accept_loop(admin, stop, Duration::from_secs(1), service).await;
        });
    }

    let limits = app.limits();
    let policy = ConnectionPolicy {
        drain: drain_timeout,
        header_read_timeout: limits.header_read_timeout,
        connections: Some((
            Arc::new(Semaphore::new(limits.max_connections)),
            app.metrics.clone(),
        )),
    };
    let serving_app = app.clone();
    let done = tokio::spawn(async move {
        let service = move |req: http::Request<hyper::body::Incoming>, client: SocketAddr| {
            let app = serving_app.clone();
            async move { Ok::<_, std::convert::Infallible>(app.handle(req, Some(client)).await) }
        };
        let mut stop_for_ready = stop.clone();
        let ready_flag = ready.clone();
        tokio::spawn(async move {
            let _ = stop_for_ready.changed().await;
            ready_flag.store(false, Ordering::SeqCst);
        });
        accept_loop_with_peer(listener, stop, policy, service).await;
        drop(ticker_stop);
        tracing::info!("runtime-host stopped");
    });

    Ok(RunningHost {
        addr,
        admin_addr,
        app,
        shutdown,
        done,
    })
}

async fn accept_loop<S, F>(
    listener: TcpListener,
    stop: watch::Receiver<bool>,
    drain: Duration,
    service: S,
) where
    S: Fn(http::Request<hyper::body::Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<http::Response<HyperOutgoingBody>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let policy = ConnectionPolicy {
        drain,
        header_read_timeout: crate::limits::DEFAULT_HEADER_READ_TIMEOUT,
        connections: None,
    };
    accept_loop_with_peer(listener, stop, policy, move |req, _peer| service(req)).await;
}

/// How a listener treats its connections.
struct ConnectionPolicy {
    /// How long in-flight requests may take to finish on shutdown.
    drain: Duration,
    /// A connection that has not sent a whole request head within this is
    /// closed (it applies to every request of a kept-alive connection, so it
    /// also bounds how long a connection may sit idle).
    header_read_timeout: Duration,
    /// The connection cap and where refusals are counted; none for the admin port.
    connections: Option<(Arc<Semaphore>, Metrics)>,
}

/// The answer to a connection over the cap, written before anything is read.
fn refusal() -> Vec<u8> {
    let body = r#"{"code":"overloaded","message":"too many open connections; retry shortly"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn accept_loop_with_peer<S, F>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    policy: ConnectionPolicy,
    service: S,
) where
    S: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<http::Response<HyperOutgoingBody>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let guard = match &policy.connections {
                    Some((slots, metrics)) => match slots.clone().try_acquire_owned() {
                        Ok(permit) => Some((permit, metrics.connection())),
                        Err(_) => {
                            metrics.connection_refused();
                            tracing::warn!(%peer, "connection limit reached; refusing a connection");
                            tokio::spawn(refuse(stream));
                            continue;
                        }
                    },
                    None => None,
                };
                let service = service.clone();
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(policy.header_read_timeout)
                    .keep_alive(true)
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |req| service(req, peer)),
                    );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _guard = guard;
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, "connection ended with error: {e}");
                    }
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(policy.drain) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
}

/// Answer a connection over the cap with a 503 and close it.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&refusal()).await?;
        stream.shutdown().await
    })
    .await;
}

/// `/readyz` is ready while the host is not draining and every Redis-backed
/// key-value store answers (each is named in the body, so a probe's log says
/// which one is down).
async fn admin_response(
    app: &App,
    ready: &AtomicBool,
    path: &str,
) -> http::Response<HyperOutgoingBody> {
    let (status, content_type, body) = match path {
        "/healthz" => (200, "text/plain", "ok\n".to_string()),
        "/readyz" if !ready.load(Ordering::SeqCst) => {
            (503, "text/plain", "shutting down\n".to_string())
        }
        "/readyz" => {
            let stores = app.kv.redis_health().await;
            let mut body = String::new();
            for (label, health) in &stores {
                match health {
                    Ok(()) => body.push_str(&format!("store {label}: ok\n")),
                    Err(e) => body.push_str(&format!("store {label}: {e}\n")),
                }
            }
            if stores.iter().all(|(_, health)| health.is_ok()) {
                (200, "text/plain", format!("ready\n{body}"))
            } else {
                (503, "text/plain", format!("not ready\n{body}"))
            }
        }
        "/metrics" => (200, "text/plain; version=0.0.4", app.metrics.render()),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    crate::app::text_response(status, content_type, body)
}
