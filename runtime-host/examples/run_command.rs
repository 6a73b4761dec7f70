//! Run a WASI 0.2 command component (`wasm32-wasip2` binary or example) on
//! the host's Wasmtime engine, with stdout/stderr inherited. Used to measure
//! library code compiled to Wasm, e.g. the indicator benchmark:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 -p market-data --example indicators_bench
//! cargo run --release -p runtime-host --example run_command -- \
//!     target/wasm32-wasip2/release/examples/indicators_bench.wasm
//! ```

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: run_command <component.wasm>");
    let engine = Engine::new(Config::new().wasm_component_model(true))?;
    let component = Component::from_file(&engine, &path)?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let wasi = WasiCtx::builder().inherit_stdout().inherit_stderr().build();
    let mut store = Store::new(
        &engine,
        State {
            wasi,
            table: ResourceTable::new(),
        },
    );
    let command = Command::instantiate_async(&mut store, &component, &linker).await?;
    command
        .wasi_cli_run()
        .call_run(&mut store)
        .await?
        .map_err(|()| anyhow::anyhow!("the command failed"))
}
