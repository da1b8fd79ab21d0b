"""deploy/k8s: every manifest parses, and the essentials hold: a StatefulSet
with a volume for RocksDB, probes on the web port and resource requests; a
Service; a PodMonitor; the payer profiles from a ConfigMap; SASL credentials
only as Secret references. The denial-queue sink: a Deployment of one, its
Service and PodMonitor (job stream-app-sink), the database URL from a Secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.promql import ROOT
from deploy.test_compose import image_is_pinned, settings_env_names
from stream_app.core.profiles import ProfileBook
from stream_app.core.rules import load_registry

K8S = ROOT / "deploy" / "k8s"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict), f"{path.name}: empty or not a mapping"
            assert doc.get("apiVersion") and doc.get("kind"), path.name
            assert doc["metadata"]["name"], path.name
            docs.append(doc)
    return docs


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in documents() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def worker_container() -> dict[str, Any]:
    [container] = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    container_: dict[str, Any] = container
    return container_


def worker_env() -> dict[str, Any]:
    """The container's environment: envFrom ConfigMaps, then env entries."""
    container = worker_container()
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env |= one("ConfigMap", source["configMapRef"]["name"])["data"]
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return env


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    [image] = kustomization["images"]
    assert image["name"] == worker_container()["image"]
    assert image_is_pinned(f"{image['newName']}:{image['newTag']}")


def test_statefulset_essentials() -> None:
    sts = one("StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert spec["serviceName"] == one("Service", "stream-app")["metadata"]["name"]
    env = worker_env()
    assert 1 <= spec["replicas"] <= int(env["STREAM_APP_PARTITIONS"])
    container = worker_container()
    # RocksDB on a persistent volume per pod
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["STREAM_APP_DATA_DIR"]
    assert env["STREAM_APP_STORE"] == "rocksdb://"
    # probes on the web port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["web"] == int(env["STREAM_APP_WEB_PORT"])
    # SPEC 9: readiness from /readyz (503 while tables recover), liveness
    # and start-up from /healthz (fails on a stall the worker cannot heal)
    paths = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in paths.items():
        check = container[probe]["httpGet"]
        assert check["port"] in ("web", ports["web"]) and check["path"] == path, probe
    # a worker that exits (code 4 on a stall it cannot heal) is restarted
    assert pod["spec"].get("restartPolicy", "Always") == "Always"
    # resources and a non-root user
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["args"] == ["worker"]


def test_service_and_pod_monitor_select_the_workers() -> None:
    labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    service = one("Service", "stream-app")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {"name": "web", "port": 6066, "targetPort": "web", "protocol": "TCP"} in service["spec"][
        "ports"
    ]
    monitor = one("PodMonitor", "stream-app")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "web" and endpoint["path"] == "/metrics"
    # The rules and the dashboard select job="stream-app".
    assert labels[monitor["spec"]["jobLabel"]] == "stream-app"


def test_payer_profiles_come_from_a_config_map(tmp_path: Path) -> None:
    container = worker_container()
    volumes = {v["name"]: v for v in one("StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    profiles_path = Path(worker_env()["STREAM_APP_PAYER_PROFILES"])
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(profiles_path.parent)]
    assert mount.get("readOnly") is True
    config_map = one("ConfigMap", volumes[mount["name"]]["configMap"]["name"])
    toml = config_map["data"][profiles_path.name]
    path = tmp_path / profiles_path.name
    path.write_text(toml)
    ProfileBook.load(path, load_registry().ids)  # raises ProfileError if the worker would refuse it


def test_sasl_credentials_are_secret_references() -> None:
    assert not [d for d in documents() if d["kind"] == "Secret"], "no credentials in the repo"
    env = worker_env()
    assert env["STREAM_APP_SECURITY_PROTOCOL"].startswith("SASL")
    for name in ("STREAM_APP_SASL_USERNAME", "STREAM_APP_SASL_PASSWORD"):
        ref = env[name]["secretKeyRef"]
        assert ref["name"] and ref["key"], name
    for source in worker_container().get("envFrom", []):
        data = one("ConfigMap", source["configMapRef"]["name"])["data"]
        assert not any("PASSWORD" in key or "USERNAME" in key for key in data)


def test_environment_names_are_read_by_the_worker() -> None:
    unknown = set(worker_env()) - settings_env_names()
    assert not unknown, f"variables the worker does not read: {unknown}"


def sink_container() -> dict[str, Any]:
    [container] = one("Deployment", "stream-app-sink")["spec"]["template"]["spec"]["containers"]
    container_: dict[str, Any] = container
    return container_


def test_sink_deployment_service_and_monitor() -> None:
    from stream_app.sink.settings import SinkSettings

    deployment = one("Deployment", "stream-app-sink")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    container = sink_container()
    assert container["args"] == ["sink", "postgres"]
    assert container["image"] == worker_container()["image"]
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env |= one("ConfigMap", source["configMapRef"]["name"])["data"]
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    # the database URL (it holds a password) only from a Secret
    ref = env["STREAM_APP_DATABASE_URL"]["secretKeyRef"]
    assert ref["name"] and ref["key"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == int(env["STREAM_APP_SINK_PORT"]) == 6067
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    readable = {f"STREAM_APP_{name.upper()}" for name in SinkSettings.model_fields}
    readable.add("KAFKA_BOOTSTRAP_SERVERS")
    extra = set(env) - readable - settings_env_names()
    assert not extra, f"variables neither the sink nor the worker reads: {extra}"
    service = one("Service", "stream-app-sink")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {"name": "metrics", "port": 6067, "targetPort": "metrics", "protocol": "TCP"} in service[
        "spec"
    ]["ports"]
    monitor = one("PodMonitor", "stream-app-sink")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[monitor["spec"]["jobLabel"]] == "stream-app-sink"  # the rules' job
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
