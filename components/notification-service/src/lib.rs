//! The `notification-service` component: Spin's HTTP trigger in front of [`alerting`].

// `#[http_component]` expands to the canonical-ABI export, which is unsafe code.
#![allow(unsafe_code)]

use spin_adapter::{Route, Service};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

static SERVICE: Service = Service {
    id: alerting::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    upstreams: alerting::UPSTREAMS,
};

#[http_component]
async fn handle(req: Request) -> Response {
    spin_adapter::serve(&SERVICE, req, route).await
}

async fn route(_req: Request) -> Route {
    Route::NotFound
}
