"""The validator finds what it is there to find (python3 -m unittest k8s/test_validate.py)."""

import copy
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate  # noqa: E402


class ValidatorCatches(unittest.TestCase):
    def setUp(self):
        self.docs = validate.documents()

    def with_app(self, name, change):
        docs = copy.deepcopy(self.docs)
        for _, doc in docs:
            if doc["kind"] == "SpinApp" and doc["metadata"]["name"] == name:
                change(doc)
        return docs

    def test_the_shipped_manifests_pass(self):
        self.assertEqual(validate.schema_errors(self.docs), [])
        self.assertEqual(validate.cross_reference_errors(self.docs), [])

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


if __name__ == "__main__":
    unittest.main()
