"""The validator finds what it is there to find (python3 -m unittest k8s/test_validate.py)."""

import copy
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate  # noqa: E402


class Checks(unittest.TestCase):
    def assertReported(self, errors, *texts):
        """Each of `texts` is part of some error."""
        for text in texts:
            self.assertTrue(any(text in e for e in errors), (text, errors))


class ValidatorCatches(Checks):
    def setUp(self):
        self.docs = validate.documents("spinkube")

    def with_app(self, name, change):
        docs = copy.deepcopy(self.docs)
        for _, doc in docs:
            if doc["kind"] == "SpinApp" and doc["metadata"]["name"] == name:
                change(doc)
        return docs

    def test_the_shipped_manifests_pass(self):
        self.assertEqual(validate.schema_errors(validate.documents()), [])
        for mode in validate.MODES:
            self.assertEqual(validate.cross_reference_errors(validate.documents(mode)), [], mode)

    def test_an_unknown_spinapp_field_fails_the_schema(self):
        docs = self.with_app("data-service", lambda d: d["spec"].update(replica=2))
        self.assertReported(validate.schema_errors(docs), "replica")

    def test_replicas_and_autoscaling_together_fail(self):
        docs = self.with_app("data-service", lambda d: d["spec"].update(enableAutoscaling=True))
        self.assertTrue(validate.schema_errors(docs))

    def test_a_bad_core_manifest_fails(self):
        docs = copy.deepcopy(self.docs)
        for _, doc in docs:
            if doc["kind"] == "Service":
                doc["spec"]["ports"][0]["port"] = "eighty"
        self.assertTrue(validate.schema_errors(docs))

    def test_a_secret_given_as_plain_value_fails(self):
        def plain(doc):
            doc["spec"]["variables"] = [
                v if v["name"] != "api_keys" else {"name": "api_keys", "value": "admin:00"}
                for v in doc["spec"]["variables"]
            ]

        docs = self.with_app("execution-service", plain)
        errors = validate.cross_reference_errors(docs)
        self.assertIn("SpinApp/execution-service: secret `api_keys` must come from a Secret", errors)

    def test_a_missing_service_url_fails(self):
        def drop(doc):
            doc["spec"]["variables"] = [
                v for v in doc["spec"]["variables"] if v["name"] != "ml_service_url"
            ]

        errors = validate.cross_reference_errors(self.with_app("execution-service", drop))
        self.assertIn(
            "SpinApp/execution-service: `ml_service_url` must be set (no local chaining across pods)",
            errors,
        )

    def test_unknown_components_accounts_and_config_keys_fail(self):
        def break_refs(doc):
            doc["spec"]["components"] = ["no-such-service"]
            doc["spec"]["serviceAccountName"] = "nobody"
            doc["spec"]["variables"][0]["valueFrom"]["configMapKeyRef"]["key"] = "missing"

        errors = validate.cross_reference_errors(self.with_app("data-service", break_refs))
        self.assertReported(errors, "no component", "no ServiceAccount", "has no key")

    def test_a_service_selecting_no_pods_fails(self):
        docs = copy.deepcopy(self.docs)
        for _, doc in docs:
            if doc["kind"] == "Service":
                doc["spec"]["selector"] = {"app": "ml-sevrice"}
        self.assertReported(validate.cross_reference_errors(docs), "matches no pods")


def find(docs, kind, name):
    return next(d for _, d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


class IstioChecks(Checks):
    def setUp(self):
        self.docs = copy.deepcopy(validate.documents("spinkube"))

    def routes(self):
        return find(self.docs, "VirtualService", "daytrade")["spec"]["http"]

    def test_canary_weights_must_sum_to_100(self):
        ml = find(self.docs, "VirtualService", "ml-service")["spec"]["http"][0]
        ml["route"][1]["weight"] = 5
        errors = validate.cross_reference_errors(self.docs)
        self.assertReported(errors, "do not sum to 100")

    def test_a_subset_must_exist(self):
        ml = find(self.docs, "VirtualService", "ml-service")["spec"]["http"][0]
        ml["route"][1]["destination"]["subset"] = "v3"
        errors = validate.cross_reference_errors(self.docs)
        self.assertReported(errors, "subset v3")

    def test_orders_are_never_retried(self):
        writes = next(r for r in self.routes() if r["name"] == "execution-writes")
        writes["retries"] = {"attempts": 2}
        errors = validate.cross_reference_errors(self.docs)
        self.assertReported(errors, "must not be retried")

    def test_principals_are_service_accounts(self):
        policy = find(self.docs, "AuthorizationPolicy", "notification-service")
        policy["spec"]["rules"][0]["from"][0]["source"]["principals"] = ["cluster.local/ns/daytrade/sa/nobody"]
        errors = validate.cross_reference_errors(self.docs)
        self.assertReported(errors, "is no ServiceAccount")

    def test_the_mesh_and_the_components_accept_the_same_tokens(self):
        edge, namespace = [d for _, d in self.docs if d["kind"] == "RequestAuthentication"]
        edge["spec"]["jwtRules"][0]["issuer"] = "https://other.example.com/"
        namespace["spec"]["jwtRules"][0]["forwardOriginalToken"] = False
        find(self.docs, "ConfigMap", "daytrade-config")["data"]["jwt_audience"] = "grafana"
        errors = validate.cross_reference_errors(self.docs)
        self.assertReported(
            errors,
            "is not the components' jwt_issuer",
            "lack the components' jwt_audience",
            "forwardOriginalToken must be true",
            "the edge and the namespace check different rules",
        )
        edge["spec"]["jwtRules"][0]["jwksUrl"] = "https://id.example.com/jwks"
        self.assertReported(validate.schema_errors(self.docs), "jwksUrl")

    def test_delegates_must_exist_and_be_used(self):
        find(self.docs, "VirtualService", "ml-service-mesh")["spec"]["http"][0]["delegate"]["name"] = "ml"
        errors = validate.cross_reference_errors(self.docs)
        self.assertReported(errors, "delegates to ml, which is no delegate")
        self.assertFalse(any("no route delegates to it" in e for e in errors), "the edge still delegates")
        next(r for r in self.routes() if r["name"] == "ml")["delegate"]["name"] = "ml"
        errors = validate.cross_reference_errors(self.docs)
        self.assertIn("VirtualService/ml-service: no hosts and no route delegates to it", errors)

    def test_unknown_istio_fields_and_values_fail(self):
        self.routes()[0]["retrys"] = {"attempts": 0}
        find(self.docs, "PeerAuthentication", "default")["spec"]["mtls"]["mode"] = "STRICTLY"
        errors = validate.schema_errors(self.docs)
        self.assertTrue(any("unknown field" in e and "retrys" in e for e in errors), errors)
        self.assertReported(errors, "PeerAuthentication")


class RuntimeHostChecks(Checks):
    def setUp(self):
        self.docs = copy.deepcopy(validate.documents("runtime-host"))

    def test_a_secret_from_a_configmap_fails(self):
        deployment = find(self.docs, "Deployment", "execution-service")
        for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if env["name"] == "SPIN_VARIABLE_JWT_SECRET":
                env["valueFrom"] = {"configMapKeyRef": {"name": "daytrade-config", "key": "public_url"}}
        errors = validate.cross_reference_errors(self.docs)
        self.assertIn("Deployment/execution-service: secret `jwt_secret` must come from a Secret", errors)

    def test_targets_and_ports_must_exist(self):
        find(self.docs, "HorizontalPodAutoscaler", "ml-service")["spec"]["scaleTargetRef"]["name"] = "ml"
        find(self.docs, "Service", "data-service")["spec"]["ports"][0]["targetPort"] = "web"
        find(self.docs, "PodDisruptionBudget", "ml-service")["spec"]["selector"]["matchLabels"] = {"app": "ml"}
        errors = validate.cross_reference_errors(self.docs)
        self.assertReported(errors, "no Deployment ml", "port `web`", "PodDisruptionBudget/ml-service")

    def test_hardening_is_schema_checked(self):
        deployment = find(self.docs, "Deployment", "data-service")
        deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = "yes"
        self.assertTrue(validate.schema_errors(self.docs))


class FlaggerChecks(Checks):
    def setUp(self):
        self.docs = copy.deepcopy(validate.documents("runtime-host"))
        self.canary = find(self.docs, "Canary", "ml-service")

    def errors(self):
        return validate.cross_reference_errors(self.docs)

    def test_the_canary_is_checked_against_flaggers_schema_and_istios(self):
        self.assertEqual(validate.schema_errors(self.docs), [])
        self.canary["spec"]["analysis"]["stepWeigths"] = [10]
        self.canary["spec"]["service"]["retries"]["retryOnn"] = "5xx"
        self.canary["spec"]["service"]["trafficPolicy"]["tls"]["mode"] = "MUTUALLY"
        errors = validate.schema_errors(self.docs)
        self.assertReported(errors, "stepWeigths", "retryOnn", "MUTUALLY")

    def test_a_deployment_selected_by_app_would_lose_its_policies(self):
        deployment = find(self.docs, "Deployment", "ml-service")
        deployment["spec"]["selector"]["matchLabels"] = {"app": "ml-service"}
        self.assertReported(self.errors(), "selects by `app`, which Flagger renames")

    def test_references_and_collisions(self):
        self.canary["spec"]["autoscalerRef"]["name"] = "ml"
        self.canary["spec"]["service"]["targetPort"] = "web"
        self.canary["spec"]["analysis"]["metrics"][2]["templateRef"]["name"] = "nothing"
        service = copy.deepcopy(find(self.docs, "Service", "data-service"))
        service["metadata"]["name"] = "ml-service-primary"
        self.docs.append((Path("x.yaml"), service))
        errors = self.errors()
        self.assertReported(
            errors,
            "no HorizontalPodAutoscaler ml",
            "has no port `web`",
            "no MetricTemplate nothing",
            "Flagger makes Service ml-service-primary",
        )

    def test_the_accuracy_check_judges_the_model_the_deployment_runs(self):
        deployment = find(self.docs, "Deployment", "ml-service")
        for env in deployment["spec"]["template"]["spec"]["containers"][0]["env"]:
            if env["name"] == "SPIN_VARIABLE_ML_MODEL_VERSION":
                env["value"] = "v2"
        self.assertIn(
            "Canary/ml-service: metric hit-rate-below-offline judges model v1; the Deployment runs v2",
            self.errors(),
        )

    def test_a_model_is_promoted_through_a_gate(self):
        self.canary["spec"]["analysis"]["webhooks"] = []
        self.assertReported(self.errors(), "confirm-promotion gate")

    def test_metric_template_queries_are_promql_over_emitted_metrics(self):
        self.assertEqual(validate.metric_template_errors(self.docs), [])
        template = find(self.docs, "MetricTemplate", "ml-hit-rate-gap")
        template["spec"]["query"] = "max(ml_hit_ratio{model_version=\"{{ variables.model_version }}\"}) >"
        errors = validate.metric_template_errors(self.docs)
        self.assertReported(errors, "`ml_hit_ratio` is not emitted")
        self.assertTrue(any("parse error" in e or "unexpected" in e for e in errors), errors)


class ChartChecks(Checks):
    def kinds(self, docs):
        return {(d["kind"], d["metadata"]["name"]) for _, d in docs}

    def test_each_values_file_renders_what_the_raw_manifests_ship(self):
        for mode in validate.MODES:
            rendered = self.kinds(validate.rendered_documents(validate.CHART / f"values-{mode}.yaml"))
            raw = self.kinds(validate.documents(mode))
            # prometheus-adapter's rule (namespace monitoring) stays raw-only.
            missing = {k for k in raw - rendered if k != ("ConfigMap", "prometheus-adapter-rules")}
            self.assertEqual(missing, set(), mode)
            self.assertEqual(rendered - raw, set(), mode)

    def test_the_chart_renders_the_same_rollout(self):
        rendered = validate.rendered_documents(validate.CHART / "values-runtime-host.yaml")
        raw = validate.documents("runtime-host")
        for kind, name in [
            ("Canary", "ml-service"),
            ("MetricTemplate", "ml-hit-rate-gap"),
            ("HorizontalPodAutoscaler", "ml-service"),
        ]:
            self.assertEqual(find(rendered, kind, name)["spec"], find(raw, kind, name)["spec"], kind)

    def test_values_are_checked_against_the_schema(self):
        helm = validate.os.environ.get("HELM", "helm")
        for bad in ["mode=cloud", "services.data-service.replicas=0", "image.pullPolicy=Sometimes"]:
            result = validate.subprocess.run(
                [helm, "template", "t", str(validate.CHART), "--set", bad],
                capture_output=True,
                check=False,
            )
            self.assertNotEqual(result.returncode, 0, bad)


class AlertmanagerChecks(Checks):
    CONFIG = validate.K8S / "monitoring/alertmanager.yml"
    # Where each alert of rules.yml must end up.
    RECEIVER = {
        "ServiceErrorRateHigh": "trading-critical",
        "KillSwitchEngaged": "trading-critical",
        "LatencyObjectiveMissed": "trading-alerts",
        "DataFetchSuccessLow": "trading-alerts",
        "GuestTraps": "trading-alerts",
        "MlAccuracyBelowOffline": "ml-owners",
    }

    def amtool(self, *args, config=None):
        return subprocess.run(
            ["amtool", *args, f"--config.file={config or self.CONFIG}"],
            capture_output=True,
            text=True,
            check=False,
        )

    def test_the_config_is_valid_and_an_unknown_receiver_is_not(self):
        checked = subprocess.run(["amtool", "check-config", str(self.CONFIG)], capture_output=True, text=True, check=False)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
        broken = yaml.safe_load(self.CONFIG.read_text())
        broken["route"]["routes"][0]["receiver"] = "nobody"
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump(broken, f)
            checked = subprocess.run(["amtool", "check-config", f.name], capture_output=True, text=True, check=False)
        self.assertNotEqual(checked.returncode, 0)

    def test_every_alert_reaches_its_receiver(self):
        rules = yaml.safe_load((validate.K8S / "monitoring/rules.yml").read_text())
        alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
        self.assertEqual({a["alert"] for a in alerts}, set(self.RECEIVER), "every alert has an expected route")
        for alert in alerts:
            labels = [f"alertname={alert['alert']}", f"severity={alert['labels']['severity']}", "component=ml-service"]
            routed = self.amtool("config", "routes", "test", f"--verify.receivers={self.RECEIVER[alert['alert']]}", *labels)
            self.assertEqual(routed.returncode, 0, (alert["alert"], routed.stdout))
        # And the test can fail: a critical alert does not go to the default.
        routed = self.amtool("config", "routes", "test", "--verify.receivers=trading-alerts", "severity=critical")
        self.assertNotEqual(routed.returncode, 0)

    def test_no_secret_is_written_in_the_config(self):
        self.assertEqual(validate.alertmanager_errors(self.CONFIG), [])
        config = yaml.safe_load(self.CONFIG.read_text())
        config["receivers"][0]["slack_configs"][0]["api_url"] = "https://hooks.slack.com/services/T0/B0/x"
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump(config, f)
            errors = validate.alertmanager_errors(Path(f.name))
        self.assertReported(errors, "api_url")


class DashboardChecks(Checks):
    def test_the_dashboard_reads_only_emitted_metrics_in_valid_promql(self):
        self.assertEqual(validate.dashboard_errors(), [])
        import json
        import tempfile

        dashboard = json.loads((validate.K8S / "monitoring/dashboard.json").read_text())
        dashboard["panels"][0]["targets"][0]["expr"] = "max(execution_kill_switch)"
        dashboard["panels"][1]["targets"][0]["expr"] = "sum(rate(ml_prediction_accuracy[5m]"
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(dashboard, f)
        errors = validate.dashboard_errors(Path(f.name))
        self.assertReported(errors, "execution_kill_switch", "dashboard queries")


if __name__ == "__main__":
    unittest.main()
