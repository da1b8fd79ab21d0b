"""docker-compose.yml, Dockerfile and .dockerignore, checked without a Docker
engine: services, pinned images, healthchecks, volumes, mounted files and the
worker's environment (SPEC 8 names)."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.promql import ROOT
from stream_app.stream.settings import WorkerSettings

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SPEC = ROOT.parent / "shared" / "spec" / "SPEC.md"
# SPEC section 8: "other settings may be added; these names are fixed".
SPEC_8_NAMES = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "STREAM_APP_INPUT_TOPIC",
    "STREAM_APP_ALERTS_TOPIC",
    "STREAM_APP_DLQ_TOPIC",
    "STREAM_APP_PARTITIONS",
    "STREAM_APP_ID",
    "STREAM_APP_STORE",
    "STREAM_APP_DATA_DIR",
    "STREAM_APP_WEB_PORT",
    "STREAM_APP_PAYER_PROFILES",
    "STREAM_APP_PROCESSING_GUARANTEE",
    "STREAM_APP_BATCH_MAX",
    "STREAM_APP_HOLD_DAYS",
    "STREAM_APP_DATABASE_URL",  # the denial-queue sink and queue commands (SPEC 11)
    "STREAM_APP_SINK_PORT",
}
SINK_ONLY = {"STREAM_APP_DATABASE_URL", "STREAM_APP_SINK_PORT"}
LONG_RUNNING = {"kafka", "worker", "kafka-exporter", "prometheus", "grafana", "postgres", "sink"}


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def settings_env_names() -> set[str]:
    """Every variable WorkerSettings reads."""
    names: set[str] = set()
    for name, field in WorkerSettings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            names |= {str(choice) for choice in choices}
        else:
            names.add(f"STREAM_APP_{name.upper()}")
    return names


def sink_env_names() -> set[str]:
    """Every variable SinkSettings reads (Kafka's and the sink's own)."""
    from stream_app.sink.settings import SinkSettings

    names: set[str] = set()
    for name, field in SinkSettings.model_fields.items():
        choices = getattr(field.validation_alias, "choices", None)
        names |= {str(c) for c in choices} if choices else {f"STREAM_APP_{name.upper()}"}
    return names


def image_is_pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    if "@sha256:" in image:
        return True
    return bool(name) and "/" not in tag and tag != "latest" and bool(re.search(r"\d", tag))


def test_services() -> None:
    found = services()
    assert set(found) == {
        "kafka",
        "topic-init",
        "worker",
        "kafka-exporter",
        "prometheus",
        "grafana",
        "sample",
        "postgres",
        "sink",
    }
    assert found["kafka"]["image"].startswith("apache/kafka:")
    assert found["kafka-exporter"]["image"].startswith("danielqsj/kafka-exporter:")
    assert found["prometheus"]["image"].startswith("prom/prometheus:")
    assert found["grafana"]["image"].startswith("grafana/grafana:")
    assert found["worker"]["build"]["context"] == "."
    assert found["worker"]["build"]["dockerfile"] == "Dockerfile"
    assert found["sample"]["profiles"] == ["sample"]
    assert all("profiles" not in s for name, s in found.items() if name != "sample")


def test_images_are_pinned() -> None:
    for name, service in services().items():
        assert image_is_pinned(service["image"]), f"{name}: {service['image']} is not pinned"
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            assert image_is_pinned(line.split()[1]), line


def test_kafka_is_single_node_kraft() -> None:
    env = services()["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert env["CLUSTER_ID"]
    assert "kafka-data:" + env["KAFKA_LOG_DIRS"] in services()["kafka"]["volumes"]


def test_healthchecks() -> None:
    found = services()
    for name in LONG_RUNNING:
        check = found[name].get("healthcheck")
        assert check and check["test"][0] in {"CMD", "CMD-SHELL"}, f"{name} has no healthcheck"
        assert found[name].get("restart") == "unless-stopped", name
    assert found["topic-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert found["kafka-exporter"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker_needs = found["worker"]["depends_on"]["topic-init"]["condition"]
    assert worker_needs == "service_completed_successfully"
    assert "6066/healthz" in " ".join(found["worker"]["healthcheck"]["test"])


def test_volumes_and_mounted_files() -> None:
    doc = compose()
    named = set(doc["volumes"])
    used: set[str] = set()
    for name, service in doc["services"].items():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
                used.add(source)
            assert target.startswith("/")
    assert used == named
    worker = doc["services"]["worker"]
    assert f"worker-data:{worker['environment']['STREAM_APP_DATA_DIR']}" in worker["volumes"]


def test_worker_environment_uses_spec_names() -> None:
    if SPEC.exists():  # beside the repository, as on every machine of the project
        text = SPEC.read_text().split("## 8.", 1)[1]
        spec_names = set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M))
        assert spec_names == SPEC_8_NAMES
    readable = settings_env_names()
    assert readable | sink_env_names() >= SPEC_8_NAMES
    assert readable >= SPEC_8_NAMES - SINK_ONLY
    found = services()
    for name in ("worker", "sample"):
        env = found[name]["environment"]
        unknown = set(env) - readable
        assert not unknown, f"{name}: variables the worker does not read: {unknown}"
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    worker = found["worker"]["environment"]
    assert set(worker) <= SPEC_8_NAMES - SINK_ONLY, set(worker) - SPEC_8_NAMES
    settings = WorkerSettings.model_validate(
        {"KAFKA_BOOTSTRAP_SERVERS": worker["KAFKA_BOOTSTRAP_SERVERS"]}
        | {
            k.removeprefix("STREAM_APP_").lower(): v
            for k, v in worker.items()
            if k != "KAFKA_BOOTSTRAP_SERVERS"
        }
    )
    init = " ".join(found["topic-init"]["command"])
    for topic in (settings.input_topic, settings.alerts_topic, settings.dlq_topic):
        assert topic in init
    assert f"--partitions {settings.partitions}" in init
    assert f"{settings.web_port}:{settings.web_port}" in found["worker"]["ports"]


def test_sink_and_its_database() -> None:
    found = services()
    sink, postgres = found["sink"], found["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert sink["image"] == found["worker"]["image"]
    assert sink["command"] == ["sink", "postgres"]
    assert sink["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert sink["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    env = sink["environment"]
    unknown = set(env) - sink_env_names()
    assert not unknown, f"sink: variables it does not read: {unknown}"
    assert set(env) <= SPEC_8_NAMES
    url = env["STREAM_APP_DATABASE_URL"]
    pg = postgres["environment"]
    expected = f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
    assert url == expected + pg["POSTGRES_DB"]
    port = env["STREAM_APP_SINK_PORT"]
    assert f"{port}:{port}" in sink["ports"]
    assert f"{port}/metrics" in " ".join(sink["healthcheck"]["test"])
    assert env["STREAM_APP_ALERTS_TOPIC"] in " ".join(found["topic-init"]["command"])


def test_monitoring_wiring() -> None:
    found = services()
    prometheus_mounts = dict(m.split(":")[:2] for m in found["prometheus"]["volumes"])
    assert (
        prometheus_mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    )
    assert prometheus_mounts["./deploy/prometheus/rules"] == "/etc/prometheus/rules"
    grafana_mounts = dict(m.split(":")[:2] for m in found["grafana"]["volumes"])
    assert grafana_mounts["./dashboards/provisioning"] == "/etc/grafana/provisioning"
    assert (
        grafana_mounts["./dashboards/stream-app.json"] == "/etc/grafana/dashboards/stream-app.json"
    )
    exporter = " ".join(found["kafka-exporter"]["command"])
    assert "--kafka.server=kafka:9092" in exporter
    assert "9308:9308" in found["kafka-exporter"]["ports"]


def test_sample_profile_publishes_the_sample() -> None:
    sample = services()["sample"]
    command = sample["command"]
    assert command[0] == "publish"
    mounts = {target: source for source, target in (m.split(":")[:2] for m in sample["volumes"])}
    path = Path(command[-1])
    source = (ROOT / mounts[str(path.parent)] / path.name).resolve()
    assert source == ROOT / "examples" / "sample-claims.jsonl" and source.exists()
    assert sample["image"] == services()["worker"]["image"]


def dockerignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p.lstrip("*/"))
        for p in patterns
    )


def dockerfile_copies() -> list[str]:
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources += line.split()[1:-1]
    return sources


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    compose_worker = services()["worker"]
    data_dir = compose_worker["environment"]["STREAM_APP_DATA_DIR"]
    assert f'VOLUME ["{data_dir}"]' in text
    assert "EXPOSE 6066" in text and "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r"^USER (?!root|0\b)\S+", text, flags=re.M), "the worker must not run as root"
    assert 'ENTRYPOINT ["stream-app"]' in text and 'CMD ["worker"]' in text
    copies = dockerfile_copies()
    assert {"pyproject.toml", "README.md", "stream_app"} <= set(copies)
    for source in copies:
        assert (ROOT / source).exists(), source
        assert not dockerignored(source), f".dockerignore excludes {source}"
    assert dockerignored(".venv") and dockerignored(".git") and dockerignored("data")


@pytest.mark.timeout(300)
def test_image_build_context_builds_the_package(tmp_path: Path) -> None:
    """What `pip install .` in the image sees (only the COPYed files) builds a
    wheel with the worker and the stream-app command."""
    context = tmp_path / "context"
    context.mkdir()
    for source in dockerfile_copies():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = (tmp_path / "dist").glob("stream_app-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "stream_app/stream/worker/app.py" in names
        assert "stream_app/stream/metrics.py" in names
        [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
        assert "stream-app = stream_app.cli:main" in archive.read(entry_points).decode()
