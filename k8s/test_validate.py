"""The validator finds what it is there to find (python3 -m unittest k8s/test_validate.py)."""

import copy
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate  # noqa: E402


class ValidatorCatches(unittest.TestCase):
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
        self.assertTrue(any("replica" in e for e in validate.schema_errors(docs)))

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
        self.assertTrue(any("no component" in e for e in errors), errors)
        self.assertTrue(any("no ServiceAccount" in e for e in errors), errors)
        self.assertTrue(any("has no key" in e for e in errors), errors)

    def test_a_service_selecting_no_pods_fails(self):
        docs = copy.deepcopy(self.docs)
        for _, doc in docs:
            if doc["kind"] == "Service":
                doc["spec"]["selector"] = {"app": "ml-sevrice"}
        self.assertTrue(any("matches no pods" in e for e in validate.cross_reference_errors(docs)))


def find(docs, kind, name):
    return next(d for _, d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


class IstioChecks(unittest.TestCase):
    def setUp(self):
        self.docs = copy.deepcopy(validate.documents("spinkube"))

    def routes(self):
        return find(self.docs, "VirtualService", "daytrade")["spec"]["http"]

    def test_canary_weights_must_sum_to_100(self):
        ml = next(r for r in self.routes() if r["name"] == "ml")
        ml["route"][1]["weight"] = 5
        errors = validate.cross_reference_errors(self.docs)
        self.assertTrue(any("do not sum to 100" in e for e in errors), errors)

    def test_a_subset_must_exist(self):
        ml = next(r for r in self.routes() if r["name"] == "ml")
        ml["route"][1]["destination"]["subset"] = "v3"
        errors = validate.cross_reference_errors(self.docs)
        self.assertTrue(any("subset v3" in e for e in errors), errors)

    def test_orders_are_never_retried(self):
        writes = next(r for r in self.routes() if r["name"] == "execution-writes")
        writes["retries"] = {"attempts": 2}
        errors = validate.cross_reference_errors(self.docs)
        self.assertTrue(any("must not be retried" in e for e in errors), errors)

    def test_principals_are_service_accounts(self):
        policy = find(self.docs, "AuthorizationPolicy", "notification-service")
        policy["spec"]["rules"][0]["from"][0]["source"]["principals"] = ["cluster.local/ns/daytrade/sa/nobody"]
        errors = validate.cross_reference_errors(self.docs)
        self.assertTrue(any("is no ServiceAccount" in e for e in errors), errors)

    def test_the_mesh_and_the_components_accept_the_same_tokens(self):
        edge, namespace = [d for _, d in self.docs if d["kind"] == "RequestAuthentication"]
        edge["spec"]["jwtRules"][0]["issuer"] = "https://other.example.com/"
        namespace["spec"]["jwtRules"][0]["forwardOriginalToken"] = False
        find(self.docs, "ConfigMap", "daytrade-config")["data"]["jwt_audience"] = "grafana"
        errors = validate.cross_reference_errors(self.docs)
        for expected in (
            "is not the components' jwt_issuer",
            "lack the components' jwt_audience",
            "forwardOriginalToken must be true",
            "the edge and the namespace check different rules",
        ):
            self.assertTrue(any(expected in e for e in errors), (expected, errors))
        edge["spec"]["jwtRules"][0]["jwksUrl"] = "https://id.example.com/jwks"
        self.assertTrue(any("jwksUrl" in e for e in validate.schema_errors(self.docs)))

    def test_unknown_istio_fields_and_values_fail(self):
        self.routes()[0]["retrys"] = {"attempts": 0}
        find(self.docs, "PeerAuthentication", "default")["spec"]["mtls"]["mode"] = "STRICTLY"
        errors = validate.schema_errors(self.docs)
        self.assertTrue(any("unknown field" in e and "retrys" in e for e in errors), errors)
        self.assertTrue(any("PeerAuthentication" in e for e in errors), errors)


class RuntimeHostChecks(unittest.TestCase):
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
        find(self.docs, "HorizontalPodAutoscaler", "ml-service-v1")["spec"]["scaleTargetRef"]["name"] = "ml"
        find(self.docs, "Service", "data-service")["spec"]["ports"][0]["targetPort"] = "web"
        find(self.docs, "PodDisruptionBudget", "ml-service")["spec"]["selector"]["matchLabels"] = {"app": "ml"}
        errors = validate.cross_reference_errors(self.docs)
        self.assertTrue(any("no Deployment ml" in e for e in errors), errors)
        self.assertTrue(any("port `web`" in e for e in errors), errors)
        self.assertTrue(any("PodDisruptionBudget/ml-service" in e for e in errors), errors)

    def test_hardening_is_schema_checked(self):
        deployment = find(self.docs, "Deployment", "data-service")
        deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = "yes"
        self.assertTrue(validate.schema_errors(self.docs))


class ChartChecks(unittest.TestCase):
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

    def test_values_are_checked_against_the_schema(self):
        helm = validate.os.environ.get("HELM", "helm")
        for bad in ["mode=cloud", "services.data-service.replicas=0", "image.pullPolicy=Sometimes"]:
            result = validate.subprocess.run(
                [helm, "template", "t", str(validate.CHART), "--set", bad],
                capture_output=True,
                check=False,
            )
            self.assertNotEqual(result.returncode, 0, bad)


class DashboardChecks(unittest.TestCase):
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
        self.assertTrue(any("execution_kill_switch" in e for e in errors), errors)
        self.assertTrue(any("dashboard queries" in e for e in errors), errors)


if __name__ == "__main__":
    unittest.main()
