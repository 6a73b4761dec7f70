//! Outbound HTTP from a component (`wasi:http/outgoing-handler`).
//!
//! Every request is checked against the component's `allowed_outbound_hosts`
//! before anything is sent. `http://<component-id>.spin.internal` is served
//! in-process by that component (Spin's local service chaining). The trace
//! context of the incoming request is propagated as `traceparent`.

use std::sync::Arc;

use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::app::{App, CallInfo};
use crate::state::ComponentConfig;
use crate::trace::TraceParent;

/// Suffix of the hosts that address a component of this application.
pub const CHAINING_SUFFIX: &str = ".spin.internal";

/// Chained calls deeper than this are a loop (A calls B calls A ...).
pub const MAX_CHAIN_DEPTH: u32 = 8;

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// The `wasi:http` hooks of one request's store.
pub struct OutboundHttp {
    pub component: Arc<ComponentConfig>,
    pub app: Arc<App>,
    pub trace: TraceParent,
    /// How many chained calls led to this request.
    pub depth: u32,
}

impl WasiHttpHooks for OutboundHttp {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let Some(host) = uri.host().map(str::to_string) else {
            return Box::new(async { Err(Error::HttpRequestUriInvalid) });
        };
        let component = &self.component;
        if !component
            .allowed_hosts
            .allows(&scheme, &host, uri.port_u16())
        {
            self.app.metrics.outbound_denied(&component.id, "http");
            tracing::warn!(component = %component.id, %uri, "outbound request denied by allowed_outbound_hosts");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        // The parent of the callee's span is this request's span.
        if !request.headers().contains_key("traceparent")
            && let Ok(value) = http::HeaderValue::from_str(&self.trace.to_string())
        {
            request.headers_mut().insert("traceparent", value);
        }
        tracing::debug!(component = %component.id, %uri, "outbound request");

        if let Some(target) = host.strip_suffix(CHAINING_SUFFIX) {
            let app = self.app.clone();
            let target = target.to_string();
            let depth = self.depth + 1;
            return Box::new(async move {
                if depth > MAX_CHAIN_DEPTH {
                    return Err(Error::LoopDetected);
                }
                let Some(callee) = app.component(&target) else {
                    return Err(Error::DestinationNotFound);
                };
                let info = CallInfo {
                    client_addr: None,
                    depth,
                };
                let response = app.call_component(&callee, request, info).await;
                Ok((
                    response.map(|body: HyperOutgoingBody| body.boxed_unsync()),
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }

        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}
