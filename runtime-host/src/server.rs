//! The listeners: the application's HTTP trigger and the admin port
//! (`/healthz`, `/readyz`, `/metrics`), and graceful shutdown: on the
//! shutdown signal both stop accepting, `/readyz` turns 503, and in-flight
//! requests are finished (up to the drain timeout) before the host exits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

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
                    Ok::<_, std::convert::Infallible>(admin_response(
                        &app,
                        &ready,
                        req.uri().path(),
                    ))
                }
            };
            accept_loop(admin, stop, Duration::from_secs(1), service).await;
        });
    }

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
        accept_loop_with_peer(listener, stop, drain_timeout, service).await;
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
    accept_loop_with_peer(listener, stop, drain, move |req, _peer| service(req)).await;
}

async fn accept_loop_with_peer<S, F>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
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
                let service = service.clone();
                let conn = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(
                        TokioIo::new(stream),
                        service_fn(move |req| service(req, peer)),
                    );
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
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
        _ = tokio::time::sleep(drain) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
}

fn admin_response(app: &App, ready: &AtomicBool, path: &str) -> http::Response<HyperOutgoingBody> {
    let (status, content_type, body) = match path {
        "/healthz" => (200, "text/plain", "ok\n".to_string()),
        "/readyz" if ready.load(Ordering::SeqCst) => (200, "text/plain", "ready\n".to_string()),
        "/readyz" => (503, "text/plain", "shutting down\n".to_string()),
        "/metrics" => (200, "text/plain; version=0.0.4", app.metrics.render()),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let mut response = http::Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
