//! The `symbol-service` component: Spin's HTTP trigger in front of [`screening`].

// `#[http_component]` expands to the canonical-ABI export, which is unsafe code.
#![allow(unsafe_code)]

use spin_adapter::{Route, Service};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

static SERVICE: Service = Service {
    id: screening::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    upstreams: screening::UPSTREAMS,
};

#[http_component]
async fn handle(req: Request) -> Response {
    spin_adapter::serve(&SERVICE, req, route).await
}

async fn route(_req: Request) -> Route {
    Route::NotFound
}
