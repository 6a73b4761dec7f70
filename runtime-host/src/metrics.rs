//! The host's Prometheus metrics, served by the admin listener on `/metrics`.
//!
//! Every series carries the component id, the same id as in spin.toml,
//! Kubernetes and Istio, so dashboards and autoscalers join on it.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    instantiation: HistogramVec,
    traps: IntCounterVec,
    timeouts: IntCounterVec,
    in_flight: IntGaugeVec,
    outbound_denied: IntCounterVec,
    load_seconds: prometheus::GaugeVec,
    connections_open: prometheus::IntGauge,
    connections_refused: prometheus::IntCounter,
    linked_calls: IntCounterVec,
    linked_duration: HistogramVec,
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique and valid");
    c
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("runtime_host".into()), None)
            .expect("the prefix is a valid metric name");
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "http_requests_total",
                    "HTTP requests served, by component and status code.",
                ),
                &["component", "status"],
            )
            .expect("valid metric"),
        );
        let duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time from request to response head, by component.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ]),
                &["component"],
            )
            .expect("valid metric"),
        );
        let instantiation = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "instantiation_duration_seconds",
                    "Time to instantiate a component for a request.",
                )
                .buckets(vec![
                    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.1,
                ]),
                &["component"],
            )
            .expect("valid metric"),
        );
        let traps = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "guest_traps_total",
                    "Requests whose component trapped (panic, out of memory, ...).",
                ),
                &["component"],
            )
            .expect("valid metric"),
        );
        let timeouts = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "guest_timeouts_total",
                    "Requests whose component ran past the request timeout.",
                ),
                &["component"],
            )
            .expect("valid metric"),
        );
        let in_flight = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "http_requests_in_flight",
                    "Requests being served, by component.",
                ),
                &["component"],
            )
            .expect("valid metric"),
        );
        let outbound_denied = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "outbound_denied_total",
                    "Outbound connections refused by allowed_outbound_hosts, by component and kind.",
                ),
                &["component", "kind"],
            )
            .expect("valid metric"),
        );
        let load_seconds = register(
            &registry,
            prometheus::GaugeVec::new(
                Opts::new(
                    "component_load_seconds",
                    "Time to load a component at startup, and whether the compiled cache was hit.",
                ),
                &["component", "cache"],
            )
            .expect("valid metric"),
        );
        let connections_open = register(
            &registry,
            prometheus::IntGauge::new(
                "connections_open",
                "Client connections open on the application listener.",
            )
            .expect("valid metric"),
        );
        let connections_refused = register(
            &registry,
            prometheus::IntCounter::new(
                "connections_refused_total",
                "Client connections answered 503 and closed because the connection limit was reached.",
            )
            .expect("valid metric"),
        );
        let linked_calls = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "linked_calls_total",
                    "Typed calls from a component to a dependency linked in its process, \
                     by importer, dependency and function.",
                ),
                &["component", "dependency", "function"],
            )
            .expect("valid metric"),
        );
        let linked_duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "linked_call_duration_seconds",
                    "Time of a typed call to a linked dependency, its instantiation included.",
                )
                .buckets(vec![
                    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                    0.05, 0.1, 0.25, 1.0,
                ]),
                &["component", "dependency"],
            )
            .expect("valid metric"),
        );
        Self {
            registry,
            linked_calls,
            linked_duration,
            connections_open,
            connections_refused,
            requests,
            duration,
            instantiation,
            traps,
            timeouts,
            in_flight,
            outbound_denied,
            load_seconds,
        }
    }

    pub fn request(&self, component: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[component, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[component])
            .observe(elapsed.as_secs_f64());
    }

    /// A typed call of `component` to its dependency's `function` (`interface#name`).
    pub fn linked_call(
        &self,
        component: &str,
        dependency: &str,
        function: &str,
        elapsed: Duration,
    ) {
        self.linked_calls
            .with_label_values(&[component, dependency, function])
            .inc();
        self.linked_duration
            .with_label_values(&[component, dependency])
            .observe(elapsed.as_secs_f64());
    }

    pub fn instantiated(&self, component: &str, elapsed: Duration) {
        self.instantiation
            .with_label_values(&[component])
            .observe(elapsed.as_secs_f64());
    }

    pub fn trap(&self, component: &str) {
        self.traps.with_label_values(&[component]).inc();
    }

    pub fn timeout(&self, component: &str) {
        self.timeouts.with_label_values(&[component]).inc();
    }

    pub fn outbound_denied(&self, component: &str, kind: &str) {
        self.outbound_denied
            .with_label_values(&[component, kind])
            .inc();
    }

    pub fn loaded(&self, component: &str, cache_hit: bool, elapsed: Duration) {
        let cache = if cache_hit { "hit" } else { "miss" };
        self.load_seconds
            .with_label_values(&[component, cache])
            .set(elapsed.as_secs_f64());
    }

    /// Count a request in flight until the guard is dropped.
    pub fn in_flight(&self, component: &str) -> InFlight {
        let gauge = self.in_flight.with_label_values(&[component]);
        gauge.inc();
        InFlight(gauge)
    }

    /// Count an open client connection until the guard is dropped.
    pub fn connection(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Make every per-component series exist (at zero) before the first request,
    /// so rates and alerts see the component from the start.
    pub fn register_component(&self, component: &str) {
        self.traps.with_label_values(&[component]);
        self.timeouts.with_label_values(&[component]);
        self.in_flight.with_label_values(&[component]);
    }

    /// The Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!("failed to encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Debug)]
pub struct OpenConnection(prometheus::IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
