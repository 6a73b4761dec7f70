//! Per-request state: what a component's `Store` holds while it serves one request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::app::App;
use crate::compose::LinkedInstance;
use crate::http_outbound::OutboundHttp;
use crate::manifest::Mount;
use crate::outbound::AllowedHosts;

/// What a component was granted by the manifest, resolved once at startup.
#[derive(Debug)]
pub struct ComponentConfig {
    pub id: String,
    /// `[component.x.variables]`, rendered.
    pub variables: HashMap<String, String>,
    pub allowed_hosts: AllowedHosts,
    pub key_value_stores: Vec<String>,
    pub sqlite_databases: Vec<String>,
    pub environment: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
}

/// The data of a component's `Store`.
pub struct HostState {
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub outbound: OutboundHttp,
    pub component: Arc<ComponentConfig>,
    pub app: Arc<App>,
    /// When the current request must be finished; checked at every epoch tick.
    pub deadline: Instant,
    /// The instances of the component's dependencies made in this store.
    pub linked: HashMap<usize, LinkedInstance>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
