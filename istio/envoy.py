#!/usr/bin/env python3
"""Translate the routing parts of istio/ into an Envoy bootstrap, for acting
the mesh out locally on a real Envoy (runtime-host/tests/system/mesh.rs).

What is translated, as Istio's sidecar would program it: the edge
VirtualService's HTTP routes in order, delegated routes merged in (URI prefix/exact and method matches,
weighted destinations by subset, timeouts, retries with retryOn and
perTryTimeout, `attempts: 0` as no retries), each DestinationRule's traffic
policy (outlier detection, connection-pool limits as circuit breakers), and
the gateway EnvoyFilters' HTTP filters and per-route configuration (the
local rate limits), which are Envoy configuration already, and the gateway's
RequestAuthentication as Envoy's jwt_authn filter the way istiod programs it
(the JWKS fetched by istiod and inlined; a token that is present must verify,
a request without one passes on). mTLS, authorization and the gateway's TLS
are not: locally the endpoints are plain HTTP processes.

Usage: envoy.py LISTEN_PORT ADMIN_PORT ENDPOINTS_JSON JWKS_JSON
ENDPOINTS_JSON maps a cluster (`<service>` or `<service>|<subset>`) to a list
of `host:port`; JWKS_JSON maps a RequestAuthentication's `jwksUri` to the JWKS
document istiod would have fetched from it. Prints the bootstrap as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ISTIO = Path(__file__).resolve().parent


def seconds(duration: str) -> str:
    """Istio durations (`2s`, `500ms`) as protobuf JSON durations."""
    if duration.endswith("ms"):
        return f"{int(duration[:-2]) / 1000}s"
    return duration


def load(kind: str) -> list[dict]:
    """istio/ as the SpinKube mode applies it: the ml canary's subsets are its
    (in the runtime-host mode Flagger writes that VirtualService at run time)."""
    docs = []
    for path in [*sorted(ISTIO.glob("*.yaml")), *sorted((ISTIO / "spinkube").glob("*.yaml"))]:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == kind]
    return docs


def service_of(host: str) -> str:
    return host.split(".")[0]


def route_entry(http: dict) -> dict:
    match = http.get("match", [{}])[0]
    uri = match.get("uri", {"prefix": "/"})
    envoy_match = {"prefix": uri["prefix"]} if "prefix" in uri else {"path": uri["exact"]}
    if "method" in match:
        envoy_match["headers"] = [
            {
                "name": ":method",
                "string_match": {"safe_regex": {"regex": match["method"]["regex"]}},
            }
        ]
    destinations = http["route"]
    route: dict = {"timeout": seconds(http.get("timeout", "15s"))}
    if len(destinations) == 1:
        d = destinations[0]["destination"]
        route["cluster"] = cluster_name(d)
    else:
        route["weighted_clusters"] = {
            "clusters": [
                {"name": cluster_name(d["destination"]), "weight": d["weight"]} for d in destinations
            ]
        }
    retries = http.get("retries", {})
    if retries.get("attempts", 0) > 0:
        route["retry_policy"] = {
            "retry_on": retries.get("retryOn", "5xx"),
            "num_retries": retries["attempts"],
            "per_try_timeout": seconds(retries.get("perTryTimeout", http.get("timeout", "15s"))),
            "retry_back_off": {"base_interval": "0.025s", "max_interval": "0.25s"},
        }
    return {"name": http.get("name", ""), "match": envoy_match, "route": route}


def cluster_name(destination: dict) -> str:
    name = service_of(destination["host"])
    return f"{name}|{destination['subset']}" if destination.get("subset") else name


def cluster(name: str, endpoints: list[str], policy: dict) -> dict:
    out = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": seconds(policy.get("connectionPool", {}).get("tcp", {}).get("connectTimeout", "2s")),
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {
                                        "address": e.rsplit(":", 1)[0],
                                        "port_value": int(e.rsplit(":", 1)[1]),
                                    }
                                }
                            }
                        }
                        for e in endpoints
                    ]
                }
            ],
        },
    }
    pool = policy.get("connectionPool", {})
    if pool:
        out["circuit_breakers"] = {
            "thresholds": [
                {
                    "max_connections": pool.get("tcp", {}).get("maxConnections", 1024),
                    "max_pending_requests": pool.get("http", {}).get("http1MaxPendingRequests", 1024),
                }
            ]
        }
        if "maxRequestsPerConnection" in pool.get("http", {}):
            out["typed_extension_protocol_options"] = {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "common_http_protocol_options": {
                        "max_requests_per_connection": pool["http"]["maxRequestsPerConnection"]
                    },
                    "explicit_http_config": {"http_protocol_options": {}},
                }
            }
    outlier = policy.get("outlierDetection")
    if outlier:
        out["outlier_detection"] = {
            "consecutive_5xx": outlier.get("consecutive5xxErrors", 5),
            "interval": seconds(outlier.get("interval", "10s")),
            "base_ejection_time": seconds(outlier.get("baseEjectionTime", "30s")),
            "max_ejection_percent": outlier.get("maxEjectionPercent", 10),
            # Istio's sidecar sets these: only consecutive 5xx ejects.
            "enforcing_consecutive_gateway_failure": 0,
            "enforcing_success_rate": 0,
        }
    return out


def resolve(http: list[dict], delegates: dict[str, dict]) -> list[dict]:
    """Routes with a `delegate` replaced by the delegate's routes under the
    root's match, as istiod merges them (one level, as Istio allows)."""
    out = []
    for route in http:
        if "delegate" not in route:
            out.append(route)
            continue
        for inner in delegates[route["delegate"]["name"]]["spec"]["http"]:
            out.append({**inner, "name": route.get("name", inner.get("name")), "match": route.get("match", [{}])})
    return out


def jwt_filter(jwks: dict[str, str]) -> dict | None:
    """The ingress gateway's RequestAuthentication as Envoy's jwt_authn."""
    rules = [
        rule
        for auth in load("RequestAuthentication")
        if auth["metadata"]["namespace"] == "istio-system"
        and auth["spec"].get("selector", {}).get("matchLabels") == {"istio": "ingressgateway"}
        for rule in auth["spec"]["jwtRules"]
    ]
    if not rules:
        return None
    providers = {}
    for i, rule in enumerate(rules):
        if rule["jwksUri"] not in jwks:
            sys.exit(f"no JWKS given for {rule['jwksUri']} (istiod would fetch it)")
        providers[f"origins-{i}"] = {
            "issuer": rule["issuer"],
            "audiences": rule.get("audiences", []),
            "local_jwks": {"inline_string": jwks[rule["jwksUri"]]},
            "forward": rule.get("forwardOriginalToken", False),
        }
    requirements = [{"provider_name": name} for name in providers] + [{"allow_missing": {}}]
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": requirements}}}],
        },
    }


def bootstrap(listen: int, admin: int, endpoints: dict[str, list[str]], jwks: dict[str, str]) -> dict:
    services = load("VirtualService")
    edge = next(vs for vs in services if vs["spec"].get("gateways") not in (None, ["mesh"]))
    policies = {service_of(dr["spec"]["host"]): dr["spec"].get("trafficPolicy", {}) for dr in load("DestinationRule")}
    delegates = {vs["metadata"]["name"]: vs for vs in services if not vs["spec"].get("hosts")}
    routes = [route_entry(http) for http in resolve(edge["spec"]["http"], delegates)]
    used = {r["route"]["cluster"] for r in routes if "cluster" in r["route"]}
    used |= {c["name"] for r in routes for c in r["route"].get("weighted_clusters", {}).get("clusters", [])}
    clusters = [cluster(name, endpoints[name], policies.get(name.split("|")[0], {})) for name in sorted(used) if name in endpoints]
    missing = sorted(used - set(endpoints))
    routes = [r for r in routes if not (set(route_clusters(r)) & set(missing))]
    http_filters = [
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    ]
    authn = jwt_filter(jwks)
    if authn:
        http_filters.insert(0, authn)
    for envoy_filter in load("EnvoyFilter"):
        for patch in envoy_filter["spec"]["configPatches"]:
            if patch["match"].get("context") != "GATEWAY":
                continue
            if patch["applyTo"] == "HTTP_FILTER" and patch["patch"]["operation"] == "INSERT_BEFORE":
                http_filters.insert(len(http_filters) - 1, patch["patch"]["value"])
            if patch["applyTo"] == "HTTP_ROUTE" and patch["patch"]["operation"] == "MERGE":
                name = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"]
                for route in routes:
                    if route["name"] == name:
                        route.update(patch["patch"]["value"])
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "edge",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "edge",
                                        "route_config": {
                                            "name": "daytrade",
                                            "virtual_hosts": [{"name": "daytrade", "domains": ["*"], "routes": routes}],
                                        },
                                        "http_filters": http_filters,
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def route_clusters(route: dict) -> list[str]:
    if "cluster" in route["route"]:
        return [route["route"]["cluster"]]
    return [c["name"] for c in route["route"]["weighted_clusters"]["clusters"]]


if __name__ == "__main__":
    listen, admin = int(sys.argv[1]), int(sys.argv[2])
    endpoints, jwks = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    json.dump(bootstrap(listen, admin, endpoints, jwks), sys.stdout, indent=1)
