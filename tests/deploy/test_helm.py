"""Helm chart deploy/helm/openitdr: lint, render every ci/ scenario, validate every object
against the Kubernetes 1.30 schemas (strict), and assert on the rendered objects.

Offline: helm-python-sdk (Helm's Go SDK) instead of a helm binary, kubernetes-validate for
the schemas. The two prometheus-operator CRDs are not in kubernetes-validate; they are checked
against the small structural schemas below.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "openitdr"
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
DETECTIONS_MD = ROOT.parent / "shared" / "docs" / "detections.md"
KUBE = "1.30.0"
CI_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
SINK_COMMANDS = {"workspace": "workspace", "sentinel": "sentinel", "syslog": "syslog",
                 "alertsTopic": "alerts-topic"}

sys.path.insert(0, str(ROOT / "deploy" / "helm"))
import helm as shim  # noqa: E402  (deploy/helm/helm.py)

MIN = {"kafka": {"bootstrapServers": "kafka:9093",
                 "sasl": {"username": "openitdr", "existingSecret": "openitdr-kafka"}}}


def merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def defaults() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@lru_cache(maxsize=None)
def _render_cached(values_json: str) -> tuple:
    out = shim.render(str(CHART), json.loads(values_json), name="itdr", namespace="secops")
    docs = []
    for path, body in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for d in yaml.safe_load_all(body):
            if d:
                docs.append((path, d))
    return tuple(docs), out.get("openitdr/templates/NOTES.txt", "")


def render(values: dict) -> list[dict]:
    return [copy.deepcopy(d) for _, d in _render_cached(json.dumps(values, sort_keys=True))[0]]


def notes(values: dict) -> str:
    return _render_cached(json.dumps(values, sort_keys=True))[1]


def ci_values(f: Path) -> dict:
    return yaml.safe_load(f.read_text()) or {}


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


def config_of(docs: list[dict]) -> dict:
    cm = one(docs, "ConfigMap", "itdr-openitdr")
    return yaml.safe_load(cm["data"]["config.yaml"])


def pod_config(docs: list[dict], spec: dict) -> dict:
    """The itdr config file a pod's first container reads (ITDR_CONFIG in the ConfigMap)."""
    c = spec["containers"][0]
    path = {e["name"]: e.get("value") for e in c["env"]}["ITDR_CONFIG"]
    assert c["args"][c["args"].index("--config") + 1] == path
    mount = [m for m in c["volumeMounts"] if m["name"] == "config"][0]["mountPath"]
    key = path.removeprefix(mount + "/")
    cm = one(docs, "ConfigMap", "itdr-openitdr")
    assert key in cm["data"], f"{path} is not in the ConfigMap"
    return yaml.safe_load(cm["data"][key])


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"])
            for d in docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


def render_error(values: dict) -> str:
    with pytest.raises(Exception) as ei:
        shim.render(str(CHART), values, name="itdr", namespace="secops")
    return str(ei.value)


# -- structural schemas for the two prometheus-operator CRDs (not in kubernetes-validate) ----
_DURATION = {"type": "string", "pattern": r"^(0|(\d+(ms|s|m|h|d|w|y))+)$"}
_META = {"type": "object", "required": ["name", "namespace"],
         "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": _META,
            "spec": {"type": "object", "additionalProperties": False, "required": ["groups"],
                     "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                         "type": "object", "required": ["name", "rules"],
                         "additionalProperties": False,
                         "properties": {
                             "name": {"type": "string", "minLength": 1},
                             "interval": _DURATION,
                             "rules": {"type": "array", "items": {
                                 "type": "object", "required": ["expr"],
                                 "additionalProperties": False,
                                 "properties": {
                                     "alert": {"type": "string"}, "record": {"type": "string"},
                                     "expr": {"type": "string"}, "for": _DURATION,
                                     "keep_firing_for": _DURATION,
                                     "labels": {"type": "object",
                                                "additionalProperties": {"type": "string"}},
                                     "annotations": {"type": "object",
                                                     "additionalProperties": {"type": "string"}},
                                 }}}}}}}}},
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": _META,
            "spec": {"type": "object", "additionalProperties": False,
                     "required": ["selector", "endpoints"],
                     "properties": {
                         "jobLabel": {"type": "string"},
                         "sampleLimit": {"type": "integer", "minimum": 0},
                         "namespaceSelector": {"type": "object", "additionalProperties": False,
                                               "properties": {
                                                   "any": {"type": "boolean"},
                                                   "matchNames": {"type": "array", "items": {
                                                       "type": "string"}}}},
                         "selector": {"type": "object", "additionalProperties": False,
                                      "properties": {"matchLabels": {"type": "object"},
                                                     "matchExpressions": {"type": "array"}}},
                         "endpoints": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False,
                             "properties": {
                                 "port": {"type": "string"}, "path": {"type": "string"},
                                 "scheme": {"enum": ["http", "https"]},
                                 "interval": _DURATION, "scrapeTimeout": _DURATION,
                                 "honorLabels": {"type": "boolean"},
                                 "relabelings": {"type": "array"},
                                 "metricRelabelings": {"type": "array"}}}}}}},
    },
}


def validate_object(doc: dict) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[key])
    else:
        kubernetes_validate.validate(doc, KUBE, strict=True)


# ---------------------------------------------------------------------------------------------
# lint and schema validation of every scenario
# ---------------------------------------------------------------------------------------------

def test_ci_scenarios_exist():
    names = {f.name for f in CI_FILES}
    for want in ("default", "sentinel-enabled", "all-optional-objects", "existing-secrets",
                 "detector-list-customised"):
        assert any(want in n for n in names), f"missing ci scenario {want}: {names}"


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda f: f.name)
def test_lint_strict(values_file):
    problems = shim.lint(str(CHART), ci_values(values_file), strict=True, kube_version=KUBE)
    assert problems == []


def test_lint_strict_reports_problems():
    """The shim must surface lint failures (here: a value the schema rejects)."""
    problems = shim.lint(str(CHART), merge(MIN, {"logLevel": "LOUD"}), strict=True,
                         kube_version=KUBE)
    assert problems, "lint accepted an invalid logLevel"


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda f: f.name)
def test_every_object_validates_against_k8s_130(values_file):
    docs = render(ci_values(values_file))
    assert docs
    for d in docs:
        validate_object(d)
        if d["metadata"]["name"].endswith("-extra"):      # the extraManifests example
            continue
        assert d["metadata"]["namespace"] == "secops"
        labels = d["metadata"]["labels"]
        assert labels.get("app.kubernetes.io/instance") == "itdr"
        assert labels.get("app.kubernetes.io/name") == "openitdr"
        assert labels.get("helm.sh/chart") == "openitdr-0.1.0"


def test_validation_catches_bad_objects():
    """kubernetes-validate strict and the CRD schemas must reject a broken object."""
    docs = render(MIN)
    dep = copy.deepcopy(one(docs, "Deployment", "itdr-openitdr-worker"))
    dep["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystm"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBE, strict=True)
    bad_rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": {"name": "x", "namespace": "y"},
                "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up",
                                                             "for": "five minutes"}]}]}}
    with pytest.raises(jsonschema.ValidationError):
        validate_object(bad_rule)


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0" and chart["appVersion"] == "0.1.0"
    docs = render(MIN)
    image = one(docs, "Deployment", "itdr-openitdr-worker")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert image == "ghcr.io/openitdr/openitdr:0.1.0"   # tag defaults to appVersion
    pinned = render(merge(MIN, {"image": {"sha": "sha256:" + "a" * 64},
                                "global": {"imageRegistry": "mirror.local"}}))
    image = one(pinned, "Deployment", "itdr-openitdr-worker")["spec"]["template"]["spec"][
        "containers"][0]["image"]
    assert image == "mirror.local/openitdr/openitdr:0.1.0@sha256:" + "a" * 64


# ---------------------------------------------------------------------------------------------
# required values and guards
# ---------------------------------------------------------------------------------------------

def test_bootstrap_servers_required():
    assert "kafka.bootstrapServers is required" in render_error({})


def test_sasl_needs_existing_secret():
    err = render_error({"kafka": {"bootstrapServers": "k:9093", "sasl": {"username": "u"}}})
    assert "kafka.sasl.existingSecret" in err


def test_worker_replicas_bounded_by_partitions():
    err = render_error(merge(MIN, {"topics": {"partitions": 2}, "worker": {"replicaCount": 3}}))
    assert "exceeds topics.partitions" in err
    err = render_error(merge(MIN, {"topics": {"partitions": 4}, "worker": {
        "replicaCount": 2, "autoscaling": {"enabled": True, "maxReplicas": 8}}}))
    assert "maxReplicas" in err
    # equal is fine
    docs = render(merge(MIN, {"topics": {"partitions": 3}, "worker": {"replicaCount": 3}}))
    assert one(docs, "Deployment", "itdr-openitdr-worker")["spec"]["replicas"] == 3


def test_sqlite_workspace_single_replica():
    err = render_error(merge(MIN, {"sinks": {"workspace": {"replicaCount": 2}}}))
    assert "SQLite" in err


# ---------------------------------------------------------------------------------------------
# detector enable list
# ---------------------------------------------------------------------------------------------

def _catalogue_ids() -> list[str]:
    text = DETECTIONS_MD.read_text(encoding="utf-8")
    return re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.M)


def test_default_detector_list_is_the_catalogue():
    default = defaults()["detectors"]["default"]
    assert len(default) == 34 and len(set(default)) == 34
    if DETECTIONS_MD.exists():
        assert sorted(default) == sorted(_catalogue_ids())
    cfg = config_of(render(MIN))
    assert cfg["detection"]["enabled"] == default


@pytest.mark.parametrize("exclude,extra", [
    ([], []),
    (["dcsync"], []),
    (["smb-session-enumeration", "lateral-movement-fanout"], ["acme-legacy-protocol", "dcsync"]),
    ([], ["brute-force", "brute-force", "x-plugin"]),       # duplicates collapse
    (["kerberoasting"], ["kerberoasting"]),                   # extra re-adds after exclusion
])
def test_detector_list_combinations(exclude, extra):
    default = defaults()["detectors"]["default"]
    cfg = config_of(render(merge(MIN, {"detectors": {"exclude": exclude, "extra": extra}})))
    enabled = cfg["detection"]["enabled"]
    expected = []
    for d in [d for d in default if d not in exclude] + extra:
        if d not in expected:
            expected.append(d)
    assert enabled == expected
    assert len(enabled) == len(set(enabled))


def test_detector_list_custom_default():
    cfg = config_of(render(merge(MIN, {"detectors": {"default": ["dcsync", "brute-force"],
                                                     "exclude": ["brute-force"],
                                                     "extra": ["zerologon"]}})))
    assert cfg["detection"]["enabled"] == ["dcsync", "zerologon"]


def test_detector_list_ci_scenario():
    f = next(f for f in CI_FILES if "detector-list-customised" in f.name)
    v = ci_values(f)
    enabled = config_of(render(v))["detection"]["enabled"]
    assert "smb-session-enumeration" not in enabled and "lateral-movement-fanout" not in enabled
    assert enabled.count("dcsync") == 1 and enabled[-1] == "acme-legacy-protocol"
    assert len(enabled) == 34 - 2 + 1
    assert f"Enabled detectors ({len(enabled)})" in notes(v)


def test_unknown_exclude_is_an_error():
    err = render_error(merge(MIN, {"detectors": {"exclude": ["dcsyncc"]}}))
    assert "dcsyncc" in err and "detectors.default" in err


def test_empty_detector_list_is_an_error():
    err = render_error(merge(MIN, {"detectors": {"default": ["dcsync"], "exclude": ["dcsync"]}}))
    assert "no detector enabled" in err


def test_enabled_not_allowed_in_detection_settings():
    err = render_error(merge(MIN, {"detection": {"settings": {"enabled": ["dcsync"]}}}))
    assert "detection.settings.enabled" in err


def test_detector_ids_schema_pattern():
    with pytest.raises(Exception):
        shim.render(str(CHART), merge(MIN, {"detectors": {"extra": ["Bad Id"]}}))


# ---------------------------------------------------------------------------------------------
# the rendered itdr config is valid for the product's own configuration model
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda f: f.name)
def test_config_loads_with_itdr_settings(values_file, tmp_path, monkeypatch):
    settings = pytest.importorskip("stream.settings")
    for k in list(__import__("os").environ):
        if k.startswith("ITDR_"):
            monkeypatch.delenv(k, raising=False)
    docs = render(ci_values(values_file))
    cfg_text = one(docs, "ConfigMap", "itdr-openitdr")["data"]["config.yaml"]
    p = tmp_path / "config.yaml"
    p.write_text(cfg_text)
    s = settings.load_settings(p)
    v = merge(defaults(), ci_values(values_file))
    assert s.kafka.bootstrap_servers == v["kafka"]["bootstrapServers"]
    assert s.worker.web_host == "0.0.0.0"
    assert s.worker.web_port == v["worker"]["webPort"]
    assert s.topics.partitions == v["topics"]["partitions"]
    assert s.kafka.sasl_password is None          # never in the ConfigMap
    assert s.detection.sensitivity == v["detection"]["sensitivity"]


SECRET_VALUES = {"ITDR_KAFKA__SASL_PASSWORD": "sasl-pw", "ITDR_KAFKA__SSL_KEY_PASSWORD": "key-pw",
                 "ITDR_SINKS__SENTINEL__CLIENT_SECRET": "client-secret",
                 "ITDR_SINKS__WORKSPACE__URL": "postgresql://itdr:pw@db.example/itdr"}


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda f: f.name)
def test_each_pod_config_validates_with_its_secret_env(values_file, tmp_path, monkeypatch):
    """Per pod: the ConfigMap plus the pod's secret env vars load into the product's own
    models (root Settings, SinksSettings, CollectorSettings), and every secret env var lands
    in the field it is meant for."""
    settings = pytest.importorskip("stream.settings")
    sinks_settings = pytest.importorskip("sinks.settings")
    coll_settings = pytest.importorskip("collectors.settings")
    docs = render(ci_values(values_file))
    for name, spec in pod_specs(docs):
        cfg_path = tmp_path / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(pod_config(docs, spec)))
        for k in list(__import__("os").environ):
            if k.startswith("ITDR_"):
                monkeypatch.delenv(k, raising=False)
        env = _env(spec["containers"][0])
        secret_env = [n for n, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})]
        for n in secret_env:
            assert n in SECRET_VALUES, f"{name}: unexpected secret env {n}"
            monkeypatch.setenv(n, SECRET_VALUES[n])
        s = settings.load_settings(cfg_path)
        got = {"ITDR_KAFKA__SASL_PASSWORD": s.kafka.sasl_password,
               "ITDR_KAFKA__SSL_KEY_PASSWORD": s.kafka.ssl_key_password}
        component = spec["containers"][0]["args"][0]
        if component == "sink":       # only sink pods get (and validate) sink credentials
            sinks = sinks_settings.SinksSettings.from_root(s)
            assert sinks.metrics_port == 9108
            got["ITDR_SINKS__SENTINEL__CLIENT_SECRET"] = sinks.sentinel.client_secret
            got["ITDR_SINKS__WORKSPACE__URL"] = sinks.workspace.url
        for n in secret_env:
            val = got[n]
            val = val.get_secret_value() if hasattr(val, "get_secret_value") else val
            assert val == SECRET_VALUES[n], f"{name}: {n} did not reach its setting"
        if component == "gateway":
            coll = coll_settings.collector_settings(s)
            c = spec["containers"][0]
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            assert (coll.gateway.tcp_port, coll.gateway.http_port) == (ports["tcp"], ports["http"])
            assert coll.gateway.host == coll.metrics_host == "0.0.0.0"
            assert coll.metrics_port == ports["metrics"]


def test_sentinel_needs_secret_or_managed_identity():
    err = render_error(merge(MIN, {"sinks": {"sentinel": {"enabled": True, "settings": {
        "endpoint": "https://dce.example"}}}}))
    assert "use_managed_identity" in err
    docs = render(merge(MIN, {"sinks": {"sentinel": {"enabled": True, "settings": {
        "endpoint": "https://dce.example", "use_managed_identity": True}}}}))
    env = _env(one(docs, "Deployment", "itdr-openitdr-sink-sentinel")["spec"]["template"][
        "spec"]["containers"][0])
    assert "ITDR_SINKS__SENTINEL__CLIENT_SECRET" not in env


@pytest.mark.parametrize("settings,msg", [
    ({"sinks": {"workspace": {"settings": {"url": "postgresql://u:pw@db/itdr"}}}}, "DSN"),
    ({"sinks": {"sentinel": {"enabled": True, "clientSecret": {"existingSecret": "s"},
                             "settings": {"client_secret": "hunter2"}}}}, "client_secret"),
    ({"sinks": {"syslog": {"settings": {"enabled": True}}}}, "sinks.syslog.enabled"),
])
def test_inline_secrets_and_enabled_in_settings_rejected(settings, msg):
    assert msg in render_error(merge(MIN, settings))


def test_worker_web_port_matches_container_port():
    docs = render(merge(MIN, {"worker": {"webPort": 7070}}))
    spec = one(docs, "Deployment", "itdr-openitdr-worker")["spec"]["template"]["spec"]
    port = {p["name"]: p["containerPort"] for p in spec["containers"][0]["ports"]}
    assert port["metrics"] == 7070
    assert config_of(docs)["worker"]["web_port"] == 7070
    assert "7070" in spec["containers"][0]["args"]


# ---------------------------------------------------------------------------------------------
# secrets: only existingSecret references, nothing inlined
# ---------------------------------------------------------------------------------------------

def _env(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def test_existing_secret_references():
    f = next(f for f in CI_FILES if "existing-secrets" in f.name)
    docs = render(ci_values(f))
    assert not by_kind(docs, "Secret")
    for name, spec in pod_specs(docs):
        c = spec["containers"][0]
        env = _env(c)
        ref = env["ITDR_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "openitdr-kafka-sasl", "key": "sasl-password"}, name
        ref = env["ITDR_KAFKA__SSL_KEY_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "openitdr-kafka-tls-keypass", "key": "passphrase"}
        tls = [v for v in spec["volumes"] if v["name"] == "kafka-tls"]
        assert tls and tls[0]["secret"]["secretName"] == "openitdr-kafka-tls"
        mount = [m for m in c["volumeMounts"] if m["name"] == "kafka-tls"][0]
        assert mount["readOnly"] is True
        assert mount["mountPath"].startswith(env["ITDR_SECRETS_DIR"]["value"] + "/")
    sentinel = one(docs, "Deployment", "itdr-openitdr-sink-sentinel")
    env = _env(sentinel["spec"]["template"]["spec"]["containers"][0])
    assert env["ITDR_SINKS__SENTINEL__CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "openitdr-sentinel", "key": "client-secret"}
    ws = one(docs, "Deployment", "itdr-openitdr-sink-workspace")
    env = _env(ws["spec"]["template"]["spec"]["containers"][0])
    assert env["ITDR_SINKS__WORKSPACE__URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "openitdr-postgres", "key": "dsn"}
    # secrets only where needed
    worker_env = _env(one(docs, "Deployment", "itdr-openitdr-worker")["spec"]["template"][
        "spec"]["containers"][0])
    assert "ITDR_SINKS__SENTINEL__CLIENT_SECRET" not in worker_env
    assert "ITDR_SINKS__WORKSPACE__URL" not in worker_env
    # file locations in the config point into the mounted secret
    kafka = config_of(docs)["kafka"]
    assert kafka["ssl_ca_location"] == "/var/run/secrets/openitdr/kafka-tls/ca.crt"
    assert kafka["ssl_certificate_location"] == "/var/run/secrets/openitdr/kafka-tls/tls.crt"
    assert kafka["ssl_key_location"] == "/var/run/secrets/openitdr/kafka-tls/tls.key"


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda f: f.name)
def test_no_secret_values_inlined(values_file):
    docs = render(ci_values(values_file))
    assert not by_kind(docs, "Secret")
    cm = one(docs, "ConfigMap", "itdr-openitdr")
    cfg = [yaml.safe_load(body) for body in cm["data"].values()]

    def walk(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                assert not re.search(r"password|secret|dsn|token", k, re.I), f"{path}.{k}"
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for v in node:
                walk(v, path)
    walk(cfg)
    for _, spec in pod_specs(docs):
        for c in spec["containers"] + spec.get("initContainers", []):
            for e in c.get("env", []):
                if re.search(r"PASSWORD|SECRET(?!S_DIR)|DSN", e["name"]):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], e


@pytest.mark.parametrize("key", [("kafka", "sasl", "password"),
                                 ("sinks", "sentinel", "clientSecret", "value"),
                                 ("sinks", "workspace", "postgresql", "dsn")])
def test_schema_rejects_inline_secret_values(key):
    v: dict = {}
    node = v
    for k in key[:-1]:
        node = node.setdefault(k, {})
    node[key[-1]] = "hunter2"
    with pytest.raises(Exception) as ei:
        shim.render(str(CHART), merge(MIN, v))
    assert "additional" in str(ei.value).lower() or "not allowed" in str(ei.value).lower()


# ---------------------------------------------------------------------------------------------
# optional objects only when enabled
# ---------------------------------------------------------------------------------------------

OPTIONAL = ["HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor",
            "PrometheusRule", "PersistentVolumeClaim"]


def test_optional_objects_absent_by_default():
    kinds = {d["kind"] for d in render(MIN)}
    for k in OPTIONAL:
        assert k not in kinds
    assert kinds == {"ConfigMap", "Deployment", "Service", "ServiceAccount"}


def test_optional_objects_present_when_enabled():
    f = next(f for f in CI_FILES if "all-optional-objects" in f.name)
    docs = render(ci_values(f))
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for want in [("HorizontalPodAutoscaler", "itdr-openitdr-worker"),
                 ("HorizontalPodAutoscaler", "itdr-openitdr-gateway"),
                 ("PodDisruptionBudget", "itdr-openitdr-worker"),
                 ("PodDisruptionBudget", "itdr-openitdr-gateway"),
                 ("NetworkPolicy", "itdr-openitdr"), ("NetworkPolicy", "itdr-openitdr-gateway"),
                 ("ServiceMonitor", "itdr-openitdr"), ("PrometheusRule", "itdr-openitdr"),
                 ("PersistentVolumeClaim", "itdr-openitdr-sink-workspace"),
                 ("ConfigMap", "itdr-extra")]:
        assert want in names, want
    # with an HPA the Deployment leaves replicas to it
    assert "replicas" not in one(docs, "Deployment", "itdr-openitdr-worker")["spec"]
    hpa = one(docs, "HorizontalPodAutoscaler", "itdr-openitdr-worker")
    assert hpa["spec"]["maxReplicas"] <= ci_values(f)["topics"]["partitions"]
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    np = one(docs, "NetworkPolicy", "itdr-openitdr")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["egress"][0]["ports"][0]["port"] == 53
    sm = one(docs, "ServiceMonitor", "itdr-openitdr")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # the ServiceMonitor selects the metrics Service
    svc = one(docs, "Service", "itdr-openitdr-metrics")
    for k, v in sm["spec"]["selector"]["matchLabels"].items():
        assert svc["metadata"]["labels"][k] == v
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]


@pytest.mark.parametrize("flag,kind", [
    ({"worker": {"autoscaling": {"enabled": True}}}, "HorizontalPodAutoscaler"),
    ({"gateway": {"podDisruptionBudget": {"enabled": True}}}, "PodDisruptionBudget"),
    ({"networkPolicy": {"enabled": True}}, "NetworkPolicy"),
    ({"serviceMonitor": {"enabled": True}}, "ServiceMonitor"),
    ({"prometheusRule": {"enabled": True}}, "PrometheusRule"),
    ({"sinks": {"workspace": {"persistence": {"enabled": True}}}}, "PersistentVolumeClaim"),
])
def test_each_flag_toggles_its_object(flag, kind):
    assert not by_kind(render(MIN), kind)
    assert by_kind(render(merge(MIN, flag)), kind)


def test_gateway_disabled_removes_gateway_objects():
    docs = render(merge(MIN, {"gateway": {"enabled": False},
                              "networkPolicy": {"enabled": True}}))
    assert not [d for d in docs if d["metadata"]["name"].endswith("-gateway")]


# ---------------------------------------------------------------------------------------------
# hardening
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda f: f.name)
def test_security_context_hardening(values_file):
    docs = render(ci_values(values_file))
    specs = pod_specs(docs)
    assert specs
    for name, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "add" not in sc["capabilities"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
            assert sc["seccompProfile"]["type"] == "RuntimeDefault"
            assert sc.get("privileged", False) is False
        for c in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            numba_dir = _env(c)["NUMBA_CACHE_DIR"]["value"]
            assert "emptyDir" in volumes[mounts[numba_dir]]
            assert c["livenessProbe"] and c["readinessProbe"], (name, c["name"])
            wd = c["workingDir"]
            assert wd in mounts, "working directory must be writable"


def test_numba_cache_prewarm_init_container():
    docs = render(MIN)
    spec = one(docs, "Deployment", "itdr-openitdr-worker")["spec"]["template"]["spec"]
    init = spec["initContainers"][0]
    assert "/opt/openitdr/numba-cache" in init["command"][-1]
    assert init["volumeMounts"][0]["mountPath"] == "/var/cache/numba"
    off = render(merge(MIN, {"numbaCache": {"prewarm": False}}))
    spec = one(off, "Deployment", "itdr-openitdr-worker")["spec"]["template"]["spec"]
    assert "initContainers" not in spec


# ---------------------------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda f: f.name)
def test_one_deployment_per_enabled_sink(values_file):
    v = merge(defaults(), ci_values(values_file))
    docs = render(ci_values(values_file))
    enabled = {SINK_COMMANDS[k] for k, s in v["sinks"].items() if s["enabled"]}
    sink_deps = [d for d in by_kind(docs, "Deployment")
                 if d["metadata"]["labels"]["app.kubernetes.io/component"].startswith("sink-")]
    commands = []
    for d in sink_deps:
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["args"][0] == "sink"
        commands.append(c["args"][1])
        assert d["metadata"]["name"] == f"itdr-openitdr-sink-{c['args'][1]}"
        assert d["spec"]["replicas"] == v["sinks"][
            {b: a for a, b in SINK_COMMANDS.items()}[c["args"][1]]]["replicaCount"]
        env = _env(c)
        port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
        assert env["ITDR_METRICS_PORT"]["value"] == str(port) == str(v["metricsPort"])
    assert sorted(commands) == sorted(enabled)
    # worker/gateway config carries no sink section; each sink's own file only its section
    assert config_of(docs)["sinks"] == {"metrics_port": v["metricsPort"],
                                        "metrics_host": "0.0.0.0"}
    for d in sink_deps:
        name = d["spec"]["template"]["spec"]["containers"][0]["args"][1]
        cfg_sinks = pod_config(docs, d["spec"]["template"]["spec"])["sinks"]
        key = name.replace("-", "_")
        assert set(cfg_sinks) == {"metrics_port", "metrics_host", key}
        if name != "workspace":
            assert cfg_sinks[key]["enabled"] is True


def test_all_sinks_and_none():
    all_on = {k: {"enabled": True} for k in SINK_COMMANDS}
    all_on["sentinel"]["settings"] = {"use_managed_identity": True}
    docs = render(merge(MIN, {"sinks": all_on}))
    names = {d["metadata"]["name"] for d in by_kind(docs, "Deployment")}
    assert {f"itdr-openitdr-sink-{c}" for c in SINK_COMMANDS.values()} <= names
    none = render(merge(MIN, {"sinks": {k: {"enabled": False} for k in SINK_COMMANDS}}))
    assert not [d for d in by_kind(none, "Deployment") if "-sink-" in d["metadata"]["name"]]
    assert config_of(none)["sinks"] == {"metrics_port": 9108, "metrics_host": "0.0.0.0"}


def test_sentinel_scenario_settings_rendered():
    f = next(f for f in CI_FILES if "sentinel-enabled" in f.name)
    v = ci_values(f)
    docs = render(v)
    spec = one(docs, "Deployment", "itdr-openitdr-sink-sentinel")["spec"]["template"]["spec"]
    cfg = pod_config(docs, spec)
    assert cfg["sinks"]["sentinel"] == {**v["sinks"]["sentinel"]["settings"], "enabled": True}
    assert "sentinel" not in config_of(docs)["sinks"]


def test_gateway_deployment_and_service():
    docs = render(MIN)
    dep = one(docs, "Deployment", "itdr-openitdr-gateway")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][0] == "gateway"
    assert c["args"][c["args"].index("--host") + 1] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["tcp"] == 5514 and ports["http"] == 5080
    svc = one(docs, "Service", "itdr-openitdr-gateway")
    sports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert sports == {"tcp": (5514, "tcp"), "http": (5080, "http")}
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
    assert dep["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]


def test_worker_deployment_is_stateless():
    docs = render(MIN)
    assert not by_kind(docs, "StatefulSet")
    dep = one(docs, "Deployment", "itdr-openitdr-worker")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["args"][:1] == ["worker"]
    assert dep["spec"]["replicas"] == 2
    assert all("persistentVolumeClaim" not in v for v in spec["volumes"])
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert config_of(docs)["worker"]["state_dir"].startswith("/var/lib/openitdr")


def test_selectors_do_not_overlap():
    f = next(f for f in CI_FILES if "all-optional-objects" in f.name)
    deps = by_kind(render(ci_values(f)), "Deployment")
    sels = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in deps]
    assert len(set(sels)) == len(sels)


def test_config_checksum_changes_with_config():
    a = one(render(MIN), "Deployment", "itdr-openitdr-worker")
    b = one(render(merge(MIN, {"detectors": {"exclude": ["dcsync"]}})), "Deployment",
            "itdr-openitdr-worker")
    ka = a["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    kb = b["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert ka != kb


# ---------------------------------------------------------------------------------------------
# PrometheusRule == deploy/prometheus/rules.yaml
# ---------------------------------------------------------------------------------------------

def test_prometheus_rule_matches_rules_file():
    assert (CHART / "files" / "prometheus-rules.yaml").read_bytes() == RULES.read_bytes(), \
        "copy deploy/prometheus/rules.yaml to deploy/helm/openitdr/files/prometheus-rules.yaml"
    docs = render(merge(MIN, {"prometheusRule": {"enabled": True}}))
    pr = one(docs, "PrometheusRule", "itdr-openitdr")
    assert pr["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    extra = {"name": "site", "rules": [{"alert": "X", "expr": "vector(1)"}]}
    pr2 = one(render(merge(MIN, {"prometheusRule": {"enabled": True, "extraGroups": [extra]}})),
              "PrometheusRule", "itdr-openitdr")
    assert pr2["spec"]["groups"][-1] == extra


# ---------------------------------------------------------------------------------------------
# values.schema.json conventions and values.yaml comments
# ---------------------------------------------------------------------------------------------

def _schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def test_schema_draft07_descriptions_and_closed_objects():
    schema = _schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(node, path, values):
        for k, sub in node.get("properties", {}).items():
            p = f"{path}.{k}" if path else k
            assert sub.get("description"), f"no description: {p}"
            if isinstance(values, dict) and isinstance(values.get(k), dict) and \
                    "properties" in sub:
                assert sub.get("additionalProperties") is False, f"open object: {p}"
            walk(sub, p, values.get(k) if isinstance(values, dict) else None)
    assert schema["additionalProperties"] is False
    walk(schema, "", defaults())


def test_schema_covers_every_value():
    schema = _schema()

    def keys(node, values, path=""):
        for k, v in values.items():
            p = f"{path}.{k}" if path else k
            assert k in node.get("properties", {}), f"values.yaml key {p} not in schema"
            sub = node["properties"][k]
            if isinstance(v, dict) and "properties" in sub:
                keys(sub, v, p)
    keys(schema, defaults())


def test_values_yaml_every_key_commented():
    """Every key of the chart's own objects has a comment line directly above it."""
    passthrough_parents = ("podSecurityContext", "containerSecurityContext", "Probe",
                           "customLabels")
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w.]*):", line)
        if not m or line.strip().startswith("#"):
            continue
        ind = len(m.group(1))
        while stack and stack[-1][0] >= ind:
            stack.pop()
        parents = [k for _, k in stack]
        stack.append((ind, m.group(2)))
        if any(p.endswith(passthrough_parents) for p in parents):
            continue
        assert lines[i - 1].strip().startswith("#"), f"line {i + 1}: {line.strip()} has no comment"
