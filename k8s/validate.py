#!/usr/bin/env python3
"""Validate every manifest under k8s/ and istio/ offline, and what no validator sees.

1. yamllint (k8s/.yamllint).
2. Each document against a schema, strictly (unknown fields are errors):
   Kubernetes kinds with kubernetes-validate's schemas; SpinApp with
   k8s/schemas/spinapp.schema.json; Flagger's Canary and MetricTemplate with
   k8s/schemas/flagger.schema.json (the Istio objects inside a Canary with
   the Istio models); Istio kinds with cloudcoil-models-istio (its models
   ignore unknown fields, so anything the model drops is reported). A kind
   with no schema fails: nothing is waved through unchecked.
3. Cross-references, against the manifests and spin.pods.toml (the manifest
   the workloads run, each service in a pod of its own):
   - a SpinApp's components exist in spin.toml;
   - every variable a SpinApp's components read has a value: a spin.toml
     default or one the SpinApp sets; service URLs must be set (Spin's local
     `*.spin.internal` chaining does not cross pods); spin.toml's secret
     variables must come from a Secret (their defaults are development keys);
   - ConfigMap keys referenced exist; ServiceAccounts named exist;
   - a Service's selector matches the pod labels of some workload;
   - Istio: route destinations are Services, their subsets exist in a
     DestinationRule and select pods, weights sum to 100, gateways exist,
     non-idempotent routes are never retried, AuthorizationPolicy principals
     are ServiceAccounts (or the ingress gateway) and selectors match pods;
     RequestAuthentications agree with each other and with the components:
     the issuer and audience are the ConfigMap's `jwt_issuer` and
     `jwt_audience` (the components check the same tokens) and the original
     token is forwarded to them;
   - VirtualService delegates exist (a shipped VirtualService without hosts,
     or the one a Canary with `delegation` makes);
   - Flagger: a Canary's Deployment, HPA, port and metric templates exist;
     the Deployment selects by a label Flagger may rename on the primary
     (not `app`, which Services and policies select by); nothing shipped
     collides with what Flagger makes (Services <name>, -primary, -canary,
     their DestinationRules, the VirtualService); the accuracy check names
     the model version the Deployment runs; a model is promoted through a
     confirm-promotion gate; metric template queries are valid PromQL over
     emitted metrics.

Exit status 0 when everything holds; every problem is printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.33.0"
TEMPLATE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


ISTIO = ROOT / "istio"
NAMESPACE = "daytrade"
INGRESS = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
# Routes whose requests must never be repeated by a proxy.
NON_IDEMPOTENT_ROUTES = {"execution-writes", "notifications-send"}


def istio_models() -> dict[tuple[str, str], type]:
    from cloudcoil.models.istio.networking.v1 import DestinationRule, Gateway, VirtualService
    from cloudcoil.models.istio.security.v1 import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
    from cloudcoil.models.istio.telemetry.v1 import Telemetry

    from cloudcoil.models.istio.networking.v1alpha3 import EnvoyFilter

    models = {
        ("telemetry.istio.io/v1", "Telemetry"): Telemetry,
        ("networking.istio.io/v1alpha3", "EnvoyFilter"): EnvoyFilter,
    }
    for model in (DestinationRule, Gateway, VirtualService):
        models[("networking.istio.io/v1", model.__name__)] = model
    for model in (AuthorizationPolicy, PeerAuthentication, RequestAuthentication):
        models[("security.istio.io/v1", model.__name__)] = model
    return models


def dropped(given, kept, path="") -> list[str]:
    """Keys of `given` that the model's dump `kept` lost: unknown fields."""
    if isinstance(given, dict):
        kept = kept if isinstance(kept, dict) else {}
        out = []
        for key, value in given.items():
            if key not in kept:
                out.append(f"{path}.{key}")
            else:
                out += dropped(value, kept[key], f"{path}.{key}")
        return out
    if isinstance(given, list) and isinstance(kept, list):
        return [e for i, (g, k) in enumerate(zip(given, kept)) for e in dropped(g, k, f"{path}[{i}]")]
    return []


# The two deployment modes: what is applied together (Istio applies to both).
MODES = {"spinkube": ["base", "spinkube"], "runtime-host": ["base", "runtime-host"]}


def istio_paths(mode: str | None) -> list[Path]:
    """istio/ for both modes, and istio/<mode>/ for what only one mode has
    (the SpinKube mode's hand-written ml canary; Flagger writes it in the other)."""
    modes = [mode] if mode else list(MODES)
    return sorted(ISTIO.glob("*.yaml")) + [p for m in modes for p in sorted((ISTIO / m).glob("*.yaml"))]


def documents(mode: str | None = None) -> list[tuple[Path, dict]]:
    """The manifests of one mode, or of both (for the schema checks)."""
    folders = MODES[mode] if mode else sorted({f for fs in MODES.values() for f in fs})
    paths = [p for folder in folders for p in sorted((K8S / folder).glob("*.yaml"))]
    docs = []
    for path in [*paths, *istio_paths(mode)]:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


CHART = K8S / "helm" / "daytrade"


def rendered_documents(values: Path) -> list[tuple[Path, dict]]:
    """The chart rendered with `values` (helm template), with istio/."""
    helm = os.environ.get("HELM", "helm")
    out = subprocess.run(
        [helm, "template", "daytrade", str(CHART), "-f", str(values)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = [(values, d) for d in yaml.safe_load_all(out) if d]
    mode = yaml.safe_load(values.read_text())["mode"]
    return docs + [(p, d) for p in istio_paths(mode) for d in yaml.safe_load_all(p.read_text()) if d]


PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels or keywords)."""
    bare = re.sub(r"\{[^}]*\}", "", expr)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    names = set(re.findall(r"(?<![\w:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", bare))
    return {n for n in names if n not in PROMQL_WORDS and not n[0].isdigit()}


def promql_errors(label: str, queries: list[tuple[str, str]]) -> list[str]:
    """`(where, expr)`: every query is valid PromQL (promtool checks them as
    recording rules) and reads only metrics the platform emits or records."""
    rules_text = (K8S / "monitoring/rules.yml").read_text()
    known = set(re.findall(r"record: (\S+)", rules_text))
    emitted = (ROOT / "components").rglob("*.rs")
    source = "\n".join(p.read_text() for p in emitted) + (ROOT / "runtime-host/src/metrics.rs").read_text()
    errors, rules = [], []
    for i, (where, expr) in enumerate(queries):
        rules.append({"record": f"check:query_{i}", "expr": expr})
        for metric in metric_names(expr):
            candidates = {metric, metric.removeprefix("runtime_host_")}
            candidates |= {c.removesuffix(x) for c in set(candidates) for x in ("_bucket", "_sum", "_count")}
            if metric not in known and not any(re.search(rf"\b{re.escape(c)}\b", source) for c in candidates):
                errors.append(f"{where}: `{metric}` is not emitted")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}, f)
    checked = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True, check=False)
    if checked.returncode:
        errors.append(f"{label}: {checked.stdout}{checked.stderr}")
    return errors


# Alertmanager fields that would hold a secret inline; their `_file` forms
# read it from a mounted Secret.
ALERTMANAGER_SECRETS = {"api_url", "url", "credentials", "password", "bearer_token"}


def alertmanager_errors(path: Path | None = None) -> list[str]:
    """No secret written in Alertmanager's config: Slack's URL and
    credentials come from files (a mounted Secret). A webhook `url` is allowed
    only without a secret in it (no userinfo, no query string)."""
    config = yaml.safe_load((path or K8S / "monitoring/alertmanager.yml").read_text())
    errors = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{where}.{key}"
                if key in ALERTMANAGER_SECRETS and isinstance(value, str):
                    inline_url = key == "url" and ("@" in value or "?" in value)
                    if key != "url" or inline_url:
                        errors.append(f"alertmanager.yml {here}: a secret written inline; use {key}_file")
                walk(value, here)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    walk(config.get("receivers", []), "receivers")
    return errors


def dashboard_errors(path: Path | None = None) -> list[str]:
    """The Grafana dashboard: every panel queries Prometheus, in valid PromQL
    over metrics the platform emits or records."""
    dashboard = json.loads((path or K8S / "monitoring/dashboard.json").read_text())
    queries = [
        (f"dashboard panel {panel['title']!r}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    return promql_errors("dashboard queries", queries)


# What Flagger puts in a MetricTemplate's query, for checking it as PromQL.
FLAGGER_TEMPLATE = re.compile(r"\{\{\s*(variables\.)?(\w+)\s*\}\}")


def metric_template_errors(docs: list[tuple[Path, dict]]) -> list[str]:
    queries = []
    for _, doc in docs:
        if doc.get("kind") == "MetricTemplate":
            expr = FLAGGER_TEMPLATE.sub(lambda m: "1m" if m.group(2) == "interval" else m.group(2), doc["spec"]["query"])
            queries.append((f"MetricTemplate/{doc['metadata']['name']}", expr))
    return promql_errors("MetricTemplate queries", queries) if queries else []


def schema_errors(docs: list[tuple[Path, dict]]) -> list[str]:
    spinapp_schema = json.loads((K8S / "schemas/spinapp.schema.json").read_text())
    flagger_schema = json.loads((K8S / "schemas/flagger.schema.json").read_text())
    istio = istio_models()
    errors = []
    for path, doc in docs:
        where = f"{path.relative_to(ROOT)}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc.get("kind") == "SpinApp":
            validator = jsonschema.Draft202012Validator(spinapp_schema)
            errors += [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
            continue
        if doc.get("apiVersion") == "flagger.app/v1beta1":
            validator = jsonschema.Draft202012Validator(flagger_schema)
            errors += [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
            if doc.get("kind") == "Canary":
                errors += [f"{where}: {e}" for e in canary_istio_errors(doc, istio)]
            continue
        model = istio.get((doc.get("apiVersion"), doc.get("kind")))
        if model is not None:
            errors += [f"{where}: {e}" for e in istio_model_errors(model, doc)]
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no schema for {doc.get('apiVersion')} {doc.get('kind')}")
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {'.'.join(str(p) for p in e.path)}: {e.message}")
    return errors


def istio_model_errors(model, doc: dict) -> list[str]:
    """`doc` through its Istio model: what the model refuses, and every field
    it drops (the models ignore unknown fields, so a dropped one is unknown)."""
    try:
        kept = model.model_validate(doc).model_dump(by_alias=True, exclude_none=True, mode="json")
    except Exception as e:  # pydantic's ValidationError, whatever its version
        return [str(e)]
    return [f"unknown field {field}" for field in dropped(doc, kept)]


def canary_istio_errors(canary: dict, istio: dict) -> list[str]:
    """The Istio objects a Canary carries, through the Istio models: its
    traffic policy as a DestinationRule's, its timeout and retries as a route's."""
    service = canary.get("spec", {}).get("service", {})
    host = "canary.check"
    as_istio = [
        (
            "DestinationRule",
            {"host": host, "trafficPolicy": service.get("trafficPolicy", {})},
        ),
        (
            "VirtualService",
            {
                "hosts": [host],
                "http": [
                    {
                        "route": [{"destination": {"host": host}}],
                        **{k: service[k] for k in ("timeout", "retries") if k in service},
                    }
                ],
            },
        ),
    ]
    errors = []
    for kind, spec in as_istio:
        doc = {"apiVersion": "networking.istio.io/v1", "kind": kind, "metadata": {"name": "c"}, "spec": spec}
        model = istio[("networking.istio.io/v1", kind)]
        errors += [f"service, checked as a {kind}: {e}" for e in istio_model_errors(model, doc)]
    return errors


def component_variables(manifest: dict) -> dict[str, set[str]]:
    """The application variables each component's templates read."""
    used = {}
    for cid, component in manifest["component"].items():
        names = set()
        for template in component.get("variables", {}).values():
            names |= set(TEMPLATE.findall(template))
        for host in component.get("allowed_outbound_hosts", []):
            names |= set(TEMPLATE.findall(host))
        used[cid] = names
    return used


def workloads(by_kind: dict[str, list[dict]]) -> list[dict]:
    """SpinApps and runtime-host Deployments alike: name, components, service
    account, variables set (name → source) and pod labels."""
    out = []
    for app in by_kind.get("SpinApp", []):
        spec = app["spec"]
        out.append(
            {
                "name": f"SpinApp/{app['metadata']['name']}",
                "components": spec.get("components", []),
                "account": spec.get("serviceAccountName"),
                "variables": {v["name"]: v for v in spec.get("variables", [])},
                "labels": spec.get("podLabels", {}),
                "ports": [],
            }
        )
    for kind in ("Deployment", "CronJob"):
        for d in by_kind.get(kind, []):
            template = d["spec"]["template"] if kind == "Deployment" else d["spec"]["jobTemplate"]["spec"]["template"]
            pod = template["spec"]
            components, variables, ports = [], {}, []
            for container in pod["containers"]:
                for arg in container.get("args", []):
                    if arg.startswith("--component-id="):
                        components.append(arg.split("=", 1)[1])
                for env in container.get("env", []):
                    if env["name"].startswith("SPIN_VARIABLE_"):
                        variables[env["name"].removeprefix("SPIN_VARIABLE_").lower()] = env
                ports += [p.get("name") for p in container.get("ports", [])]
            out.append(
                {
                    "name": f"{kind}/{d['metadata']['name']}",
                    "components": components,
                    "account": pod.get("serviceAccountName"),
                    "variables": variables,
                    "labels": template["metadata"].get("labels", {}),
                    "ports": ports,
                    "env": [e for c in pod["containers"] for e in c.get("env", [])],
                }
            )
    return out


def selects_any(selector: dict, pods: list[dict]) -> bool:
    """A label selector matches the labels of at least one of `pods`."""
    return any(selector.items() <= labels.items() for labels in pods)


def cross_reference_errors(docs: list[tuple[Path, dict]]) -> list[str]:
    # The workloads run one service each, of the manifest made for that.
    manifest = tomllib.loads((ROOT / "spin.pods.toml").read_text())
    declared = manifest["variables"]
    used = component_variables(manifest)
    by_kind: dict[str, list[dict]] = {}
    for _, doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    config_keys = {
        cm["metadata"]["name"]: set(cm.get("data", {})) for cm in by_kind.get("ConfigMap", [])
    }
    accounts = {sa["metadata"]["name"] for sa in by_kind.get("ServiceAccount", [])}
    loads = workloads(by_kind)
    pod_labels = [w["labels"] for w in loads]

    errors = []
    for w in loads:
        name = w["name"]
        if w["account"] and w["account"] not in accounts:
            errors.append(f"{name}: no ServiceAccount `{w['account']}`")
        for env in [*w["variables"].values(), *w.get("env", [])]:
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref and ref["key"] not in config_keys.get(ref["name"], set()):
                errors.append(f"{name}: ConfigMap {ref['name']} has no key `{ref['key']}`")
        for var in w["variables"]:
            if var not in declared:
                errors.append(f"{name}: sets `{var}`, which spin.toml does not declare")
        for component in w["components"]:
            if component not in used:
                errors.append(f"{name}: spin.toml has no component `{component}`")
                continue
            for var in sorted(used[component]):
                decl = declared.get(var, {})
                given = w["variables"].get(var)
                if var.endswith("_service_url") and given is None:
                    errors.append(f"{name}: `{var}` must be set (no local chaining across pods)")
                elif decl.get("secret") and (given is None or "secretKeyRef" not in given.get("valueFrom", {})):
                    errors.append(f"{name}: secret `{var}` must come from a Secret")
                elif given is None and "default" not in decl:
                    errors.append(f"{name}: `{var}` has no default and is not set")
    for service in by_kind.get("Service", []):
        selector = service["spec"].get("selector", {})
        matching = [w for w in loads if selector and selects_any(selector, [w["labels"]])]
        if selector and not matching:
            errors.append(f"Service/{service['metadata']['name']}: selector {selector} matches no pods")
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort")
            if isinstance(target, str) and matching and not all(target in w["ports"] for w in matching):
                errors.append(f"Service/{service['metadata']['name']}: not every pod has port `{target}`")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        selector = pdb["spec"]["selector"]["matchLabels"]
        if not selects_any(selector, pod_labels):
            errors.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: selector matches no pods")
    deployments = {d["metadata"]["name"] for d in by_kind.get("Deployment", [])}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            errors.append(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: no Deployment {target['name']}")
    for policy in by_kind.get("NetworkPolicy", []):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if selector and not selects_any(selector, pod_labels):
            errors.append(f"NetworkPolicy/{policy['metadata']['name']}: selects no pods")
    config = {k: v for cm in by_kind.get("ConfigMap", []) for k, v in cm.get("data", {}).items()}
    return (
        errors
        + istio_reference_errors(by_kind, accounts, pod_labels)
        + token_errors(by_kind, config)
        + flagger_errors(by_kind, loads)
    )


# Flagger renames the first of these its Deployment's selector has on the
# primary's pods (`<value>-primary`); others are copied as they are.
FLAGGER_SELECTOR_LABELS = ["app", "name", "app.kubernetes.io/name"]


def canary_names(canary: dict) -> tuple[str, str, str]:
    """The apex, primary and canary Services (and hosts) Flagger makes."""
    apex = canary["spec"].get("service", {}).get("name") or canary["spec"]["targetRef"]["name"]
    return apex, f"{apex}-primary", f"{apex}-canary"


def flagger_errors(by_kind, loads) -> list[str]:
    errors = []
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    hpas = {h["metadata"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    templates = {t["metadata"]["name"] for t in by_kind.get("MetricTemplate", [])}
    shipped = {kind: {d["metadata"]["name"] for d in by_kind.get(kind, [])} for kind in ("Service", "VirtualService", "DestinationRule")}
    for canary in by_kind.get("Canary", []):
        name = f"Canary/{canary['metadata']['name']}"
        spec = canary["spec"]
        target = deployments.get(spec["targetRef"]["name"])
        if target is None:
            errors.append(f"{name}: no Deployment {spec['targetRef']['name']}")
            continue
        selector = target["spec"]["selector"].get("matchLabels", {})
        renamed = next((label for label in FLAGGER_SELECTOR_LABELS if label in selector), None)
        if renamed is None:
            errors.append(f"{name}: Deployment {target['metadata']['name']} selects by none of {FLAGGER_SELECTOR_LABELS}")
        elif renamed == "app":
            errors.append(
                f"{name}: Deployment {target['metadata']['name']} selects by `app`, which Flagger renames on the "
                "primary's pods while Services and policies select by it; select by app.kubernetes.io/name"
            )
        load = next(w for w in loads if w["name"] == f"Deployment/{target['metadata']['name']}")
        target_port = spec.get("service", {}).get("targetPort")
        if isinstance(target_port, str) and target_port not in load["ports"]:
            errors.append(f"{name}: Deployment {target['metadata']['name']} has no port `{target_port}`")
        scaler = spec.get("autoscalerRef")
        if scaler:
            hpa = hpas.get(scaler["name"])
            if hpa is None:
                errors.append(f"{name}: no HorizontalPodAutoscaler {scaler['name']}")
            elif hpa["spec"]["scaleTargetRef"]["name"] != target["metadata"]["name"]:
                errors.append(f"{name}: HorizontalPodAutoscaler {scaler['name']} scales another Deployment")
        apex, primary, canary_svc = canary_names(canary)
        for service in (apex, primary, canary_svc):
            if service in shipped["Service"]:
                errors.append(f"{name}: Flagger makes Service {service}; a shipped one would fight it")
        for rule in (primary, canary_svc):
            if rule in shipped["DestinationRule"]:
                errors.append(f"{name}: Flagger makes DestinationRule {rule}; a shipped one would fight it")
        if apex in shipped["VirtualService"]:
            errors.append(f"{name}: Flagger makes VirtualService {apex}; a shipped one would fight it")
        analysis = spec["analysis"]
        for metric in analysis.get("metrics", []):
            ref = metric.get("templateRef")
            if ref is None and metric["name"] not in ("request-success-rate", "request-duration"):
                errors.append(f"{name}: metric {metric['name']} is no Flagger builtin and has no templateRef")
            if ref is not None and ref["name"] not in templates:
                errors.append(f"{name}: no MetricTemplate {ref['name']}")
            version = metric.get("templateVariables", {}).get("model_version")
            runs = load["variables"].get("ml_model_version", {}).get("value")
            if version is not None and version != runs:
                errors.append(f"{name}: metric {metric['name']} judges model {version}; the Deployment runs {runs}")
        if "ml-service" in load["components"] and not any(
            hook["type"] == "confirm-promotion" for hook in analysis.get("webhooks", [])
        ):
            errors.append(f"{name}: a model is promoted through a confirm-promotion gate (its hit rate takes days)")
    return errors


def token_errors(by_kind, config: dict[str, str]) -> list[str]:
    """The mesh and the components accept the same end-user tokens."""
    errors = []
    rules = []
    for auth in by_kind.get("RequestAuthentication", []):
        name = f"RequestAuthentication/{auth['metadata']['namespace']}/{auth['metadata']['name']}"
        for rule in auth["spec"].get("jwtRules", []):
            rules.append(rule)
            if rule.get("issuer") != config.get("jwt_issuer"):
                errors.append(f"{name}: issuer {rule.get('issuer')} is not the components' jwt_issuer {config.get('jwt_issuer')}")
            if config.get("jwt_audience") not in rule.get("audiences", []):
                errors.append(f"{name}: audiences {rule.get('audiences')} lack the components' jwt_audience")
            if not rule.get("forwardOriginalToken"):
                errors.append(f"{name}: forwardOriginalToken must be true (the components check the token again)")
    if any(rule != rules[0] for rule in rules):
        errors.append("RequestAuthentication: the edge and the namespace check different rules")
    return errors


def istio_reference_errors(by_kind, accounts, pod_labels) -> list[str]:
    # SpinKube makes a Service per SpinApp, named after it; others are explicit.
    services = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
    services |= {a["metadata"]["name"] for a in by_kind.get("SpinApp", [])}
    services |= {s for c in by_kind.get("Canary", []) for s in canary_names(c)}
    hosts = {f"{s}.{NAMESPACE}.svc.cluster.local": s for s in services}
    # Delegates: shipped VirtualServices without hosts, and those Canaries make.
    delegates = {vs["metadata"]["name"] for vs in by_kind.get("VirtualService", []) if not vs["spec"].get("hosts")}
    delegates |= {canary_names(c)[0] for c in by_kind.get("Canary", []) if c["spec"].get("service", {}).get("delegation")}
    referenced = set()
    subsets = {}
    errors = []
    for rule in by_kind.get("DestinationRule", []):
        host = rule["spec"]["host"]
        if host not in hosts:
            errors.append(f"DestinationRule/{rule['metadata']['name']}: host {host} is no Service")
        for subset in rule["spec"].get("subsets", []):
            subsets.setdefault(host, set()).add(subset["name"])
            labels = {"app": hosts.get(host, ""), **subset.get("labels", {})}
            if not selects_any(labels, pod_labels):
                errors.append(f"DestinationRule/{rule['metadata']['name']}: subset {subset['name']} selects no pods")
    gateways = {g["metadata"]["name"] for g in by_kind.get("Gateway", [])} | {"mesh"}
    for vs in by_kind.get("VirtualService", []):
        name = f"VirtualService/{vs['metadata']['name']}"
        for gateway in vs["spec"].get("gateways", []):
            if gateway not in gateways:
                errors.append(f"{name}: no Gateway `{gateway}`")
        if not vs["spec"].get("hosts") and vs["spec"].get("gateways"):
            errors.append(f"{name}: a delegate VirtualService has no gateways")
        for route in vs["spec"].get("http", []):
            delegate = route.get("delegate")
            if delegate is not None:
                referenced.add(delegate["name"])
                if delegate["name"] not in delegates or delegate.get("namespace", NAMESPACE) != NAMESPACE:
                    errors.append(f"{name}: route {route.get('name')} delegates to {delegate['name']}, which is no delegate")
                if "route" in route or "redirect" in route:
                    errors.append(f"{name}: route {route.get('name')} delegates and routes at once")
                if route.get("name") in NON_IDEMPOTENT_ROUTES:
                    errors.append(f"{name}: route {route['name']} is not idempotent: its retries must show here")
            destinations = route.get("route", [])
            weights = [d.get("weight") for d in destinations]
            if len(destinations) > 1 and sum(w or 0 for w in weights) != 100:
                errors.append(f"{name}: route {route.get('name')} weights {weights} do not sum to 100")
            for d in destinations:
                host, subset = d["destination"]["host"], d["destination"].get("subset")
                if host not in hosts:
                    errors.append(f"{name}: route {route.get('name')} goes to {host}, which is no Service")
                if subset and subset not in subsets.get(host, set()):
                    errors.append(f"{name}: subset {subset} of {host} is in no DestinationRule")
            if route.get("name") in NON_IDEMPOTENT_ROUTES and route.get("retries", {}).get("attempts") != 0:
                errors.append(f"{name}: route {route['name']} is not idempotent and must not be retried")
    for vs in by_kind.get("VirtualService", []):
        if not vs["spec"].get("hosts") and vs["metadata"]["name"] not in referenced:
            errors.append(f"VirtualService/{vs['metadata']['name']}: no hosts and no route delegates to it")
    for telemetry in by_kind.get("Telemetry", []):
        selector = telemetry["spec"].get("selector", {}).get("matchLabels", {})
        if selector and not selects_any(selector, pod_labels):
            errors.append(f"Telemetry/{telemetry['metadata']['name']}: selector {selector} matches no pods")
    for policy in by_kind.get("AuthorizationPolicy", []):
        name = f"AuthorizationPolicy/{policy['metadata']['name']}"
        spec = policy.get("spec") or {}
        selector = spec.get("selector", {}).get("matchLabels", {})
        if selector and not selects_any(selector, pod_labels):
            errors.append(f"{name}: selector {selector} matches no pods")
        for rule in spec.get("rules", []):
            for source in rule.get("from", []):
                for principal in source.get("source", {}).get("principals", []):
                    account = principal.removeprefix(f"cluster.local/ns/{NAMESPACE}/sa/")
                    if principal != INGRESS and account not in accounts:
                        errors.append(f"{name}: principal {principal} is no ServiceAccount")
    return errors


def main() -> int:
    lint = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", "k8s/.yamllint", "k8s", "istio"],
        check=False,
        cwd=ROOT,
    )
    docs = documents()
    errors = schema_errors(docs) + dashboard_errors() + metric_template_errors(docs) + alertmanager_errors()
    for mode in MODES:
        errors += [f"[{mode}] {e}" for e in cross_reference_errors(documents(mode))]
    # The Helm chart: lint, render each values file, check the result the same way.
    for values in sorted(CHART.glob("values-*.yaml")):
        helm = os.environ.get("HELM", "helm")
        linted = subprocess.run([helm, "lint", "--strict", str(CHART), "-f", str(values)], check=False)
        if linted.returncode:
            errors.append(f"helm lint --strict fails with {values.name}")
        rendered = rendered_documents(values)
        errors += [f"[chart {values.name}] {e}" for e in schema_errors(rendered) + cross_reference_errors(rendered)]
        docs += rendered
    for error in errors:
        print(f"error: {error}")
    print(f"{len(docs)} manifests, {len(errors)} problems, yamllint exit {lint.returncode}")
    return 1 if errors or lint.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
