"""infra/k8s (issue 16): every overlay renders with `kubectl kustomize`, every object validates
against a pinned Kubernetes version's schema (kubernetes-validate, strict: unknown fields are
errors), and the invariants hold - probes on every long-running container, no `:latest` or
untagged image, no literal secret, non-root with a read-only root filesystem, resources set,
the replica counts, budgets, policies and monitoring objects the issue asks for."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from registry_core import metrics
from registry_core.settings import Settings

ROOT = Path(__file__).parents[2]
K8S = ROOT / "infra" / "k8s"
KUBERNETES_VERSION = "1.31.0"  # the oldest minor the manifests promise to work on
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]
CRDS = {"ServiceMonitor", "PrometheusRule"}  # Prometheus Operator kinds: checked by hand below
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|GRANT_KEY|ACCESS_KEY|DATABASE_URL|CREDENTIAL")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render infra/k8s (.ci/run installs Debian's kubectl)"
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in render(overlay) if o["kind"] == kind]


def one(overlay: str, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects(overlay, kind) if o["metadata"]["name"] == name]
    return found


def pod_specs(overlay: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in render(overlay)
        if o["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_pinned_kubernetes_schema(overlay: str) -> None:
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Job", "PodDisruptionBudget"} <= kinds
    assert {"HorizontalPodAutoscaler", "NetworkPolicy", "ServiceMonitor"} <= kinds
    for doc in docs:
        if doc["kind"] in CRDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_non_root_read_only_probed_pinned_and_bounded(overlay: str) -> None:
    for where, spec in pod_specs(overlay):
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        for c in spec["containers"]:
            at = f"{where}/{c['name']}"
            image = c["image"]
            repo, _, tag = image.rpartition(":")
            assert repo and "/" in repo and tag and tag != "latest", f"{at}: image {image}"
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, at
            assert sc["allowPrivilegeEscalation"] is False, at
            assert sc["capabilities"]["drop"] == ["ALL"], at
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][bound]), f"{at}: {bound}"
            if where.startswith("Job/"):
                continue  # a run-to-completion container: bounded by activeDeadlineSeconds
            ports = {p["name"] for p in c["ports"]}
            for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
                assert probe in c, f"{at}: no {probe}"
                assert c[probe]["httpGet"]["path"] == path, f"{at}: {probe}"
                assert c[probe]["httpGet"]["port"] in ports, f"{at}: {probe} port"
            assert c["startupProbe"]["httpGet"]["path"] == "/livez", at
        assert "Job/opsml-migrate" in {w for w, _ in pod_specs(overlay)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_literal_secret_only_references(overlay: str) -> None:
    docs = render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are created by the operator"
    referenced: set[tuple[str, str]] = set()
    for where, spec in pod_specs(overlay):
        for c in spec["containers"]:
            for var in c.get("env", []):
                if SECRETISH.search(var["name"]):
                    assert "value" not in var, f"{where}: {var['name']} is a literal"
                    ref = var["valueFrom"]["secretKeyRef"]
                    referenced.add((ref["name"], ref["key"]))
    for cm in objects(overlay, "ConfigMap"):
        for key, value in cm["data"].items():
            assert not SECRETISH.search(key), f"{key} belongs in the Secret"
            assert "://" not in value or "@" not in value, f"{key} holds credentials"
    assert {name for name, _ in referenced} == {"opsml-secrets"}
    operations = (ROOT / "docs" / "operations.md").read_text()
    for _, key in referenced:  # the docs' `kubectl create secret` names every key
        assert f"--from-literal={key}=" in operations, key


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_are_real_and_the_ports_agree(overlay: str) -> None:
    (cm,) = objects(overlay, "ConfigMap")
    fields = Settings.model_fields
    for key in cm["data"]:
        if key.startswith("OPSML_"):
            assert key.removeprefix("OPSML_").lower() in fields, f"{key} is not a setting"
    Settings(
        **{k.removeprefix("OPSML_").lower(): v for k, v in cm["data"].items() if "OPSML_" in k}
    )
    worker = one(overlay, "Deployment", "opsml-worker")["spec"]["template"]["spec"]
    (port,) = worker["containers"][0]["ports"]
    assert str(port["containerPort"]) == cm["data"]["OPSML_WORKER_HEALTH_PORT"]
    api = one(overlay, "Deployment", "opsml-api")["spec"]["template"]["spec"]
    assert str(api["containers"][0]["ports"][0]["containerPort"]) == cm["data"]["OPSML_API_PORT"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_budgets_autoscaling_and_policies(overlay: str) -> None:
    api = one(overlay, "Deployment", "opsml-api")
    worker = one(overlay, "Deployment", "opsml-worker")
    assert api["spec"]["replicas"] >= 2
    assert worker["spec"]["replicas"] == 2  # one active, one hot standby on the advisory lock
    hpa = one(overlay, "HorizontalPodAutoscaler", "opsml-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "opsml-api"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdbs = {p["metadata"]["name"]: p["spec"] for p in objects(overlay, "PodDisruptionBudget")}
    assert pdbs["opsml-worker"]["maxUnavailable"] == 1
    assert pdbs["opsml-api"]["minAvailable"] < api["spec"]["replicas"]  # drains can proceed
    policies = {p["metadata"]["name"]: p["spec"] for p in objects(overlay, "NetworkPolicy")}
    deny = policies["opsml-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny
    egress_ports = {p["port"] for rule in policies["opsml-egress"]["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 9092, 9093, 5432, 9000, 443}  # DNS, Kafka, Postgres, S3
    api_from = policies["opsml-api-ingress"]["ingress"][0]["from"]
    sources = {
        f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for f in api_from
    }
    assert sources == {"ingress-nginx", "monitoring"}
    job = one(overlay, "Job", "opsml-migrate")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["opsml", "migrate"]


def test_only_prod_has_the_ingress_with_tls_and_it_keeps_ops_paths_inside() -> None:
    assert not objects("overlays/dev", "Ingress") and not objects("base", "Ingress")
    (ingress,) = objects("overlays/prod", "Ingress")
    spec = ingress["spec"]
    assert spec["tls"][0]["secretName"] and spec["tls"][0]["hosts"] == [spec["rules"][0]["host"]]
    routes = [(p["path"], p["pathType"]) for p in spec["rules"][0]["http"]["paths"]]

    def routed(path: str) -> bool:
        return any(
            path == p if kind == "Exact" else path == p or path.startswith(p.rstrip("/") + "/")
            for p, kind in routes
        )

    for private in ("/metrics", "/livez", "/readyz"):
        assert not routed(private), private
    from workers.api.app import create_app

    app = create_app(Settings())
    public = [
        getattr(r, "path", "") for r in app.routes if getattr(r, "path", "") not in
        ("/metrics", "/livez", "/readyz")
    ]  # fmt: skip
    missing = [p for p in public if p and not routed(p.split("{")[0].rstrip("/") or "/")]
    assert not missing, f"routes the Ingress does not serve: {missing}"


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def _metric_names() -> set[str]:
    """Every series name the two processes can export (labelled ones have no sample yet)."""
    return {
        family.name + suffix
        for registry in (metrics.API, metrics.WORKER)
        for family in registry.collect()
        for suffix in SUFFIXES[family.type]
    }


def _referenced(expr: str) -> set[str]:
    return set(re.findall(r"\bopsml_[a-z_]+\b", expr))


def test_monitoring_objects_scrape_both_processes_and_use_real_metrics() -> None:
    known = _metric_names()
    (monitor,) = objects("base", "ServiceMonitor")
    service_ports = {p["name"] for s in objects("base", "Service") for p in s["spec"]["ports"]}
    endpoints = monitor["spec"]["endpoints"]
    assert {e["port"] for e in endpoints} == {"http", "health"} <= service_ports
    assert all(e["path"] == "/metrics" for e in endpoints)
    (rules,) = objects("base", "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]}
    for wanted in ("OpsmlNoActiveSequencer", "OpsmlCommandsLagGrowing", "OpsmlHighRejectionRate"):
        assert wanted in alerts
    for name, expr in alerts.items():
        assert _referenced(expr) and _referenced(expr) <= known, (name, _referenced(expr) - known)
    dashboard = json.loads((ROOT / "infra" / "grafana" / "opsml-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    used = set().union(*map(_referenced, exprs))
    assert used <= known, used - known
    # every metric the processes export is on the dashboard
    families = {f.name for r in (metrics.API, metrics.WORKER) for f in r.collect()}
    assert not {f for f in families if not any(n.startswith(f) for n in used)}
