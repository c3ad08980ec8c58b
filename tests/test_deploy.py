"""deploy/ checked without a Docker engine or a cluster (neither runs here): the compose files against
the Compose Specification schema, the Kubernetes manifests against the API schemas (strict: an unknown
field fails), the KEDA ScaledObjects against KEDA's models, the Dockerfiles with hadolint; and every
file against the code it deploys (stages, consumer groups, topics, settings, probes)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject

from pipeline.settings import Settings
from pipeline.stages import STAGES, group_id

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.33.0"
STAGE_TOPIC = {name: stage.topic for name, stage in STAGES.items() if name != "audit"}  # audit: one writer
SETTINGS_ENV = {f"GENGUARD_{name.upper()}" for name in Settings.model_fields}


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is not installed in the venv (pip install -e '.[dev]')"
    return found


def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), f"kustomization.yaml names a missing file {name}"
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.gpu"])
def test_dockerfiles_pass_hadolint_and_copy_what_exists(dockerfile: str) -> None:
    done = subprocess.run([tool("hadolint"), "--no-color", str(DEPLOY / dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (DEPLOY / dockerfile).read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.M):
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), f"{dockerfile} copies {src}, which is not in the repository"
    assert "USER 10001" in text and 'ENTRYPOINT ["genguard"]' in text


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /src && pip install .\n")
    assert subprocess.run([tool("hadolint"), str(bad)], capture_output=True).returncode != 0


def test_compose_files_match_the_compose_spec(tmp_path: Path) -> None:
    check = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    done = subprocess.run([*check, str(DEPLOY / "compose.yaml"), str(DEPLOY / "compose.gpu.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = compose()
    broken["services"]["api"]["healthcheck"]["intervall"] = "5s"  # a typo the schema must refuse
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert subprocess.run([*check, str(tmp_path / "compose.yaml")], capture_output=True).returncode != 0


def test_compose_runs_kafka_in_kraft_and_one_worker_per_stage() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:3.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft: no ZooKeeper
    assert "zookeeper" not in services
    workers = {s["command"][-1]: name for name, s in services.items() if s.get("command", [""])[0] == "worker"}
    assert set(workers) == set(STAGES)
    for name, service in services.items():
        if service.get("image", "").startswith("${GENGUARD_IMAGE"):
            assert set(service["environment"]) <= SETTINGS_ENV, f"{name}: unknown GENGUARD_* variable"
            if name != "topics":
                assert "healthcheck" in service and service["depends_on"]["topics"]["condition"] == \
                    "service_completed_successfully"
    assert services["api"]["healthcheck"]["test"][-1].endswith("/readyz")
    assert {"media", "audit", "kafka", "redis"} <= set(compose()["volumes"])


def test_kubernetes_manifests_are_valid_objects() -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "Job",
                                         "ScaledObject", "Namespace"}
    for doc in docs:
        if doc["kind"] == "ScaledObject":
            parsed = ScaledObject.model_validate(doc)  # KEDA's own types; a dropped key was an unknown one
            assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    secrets = [d for d in yaml.safe_load_all((K8S / "secrets.example.yaml").read_text()) if d]
    for doc in secrets:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_would_catch_a_misspelt_field() -> None:
    deployment = copy.deepcopy(of_kind("Deployment")["genguard-api"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    scaled = copy.deepcopy(next(iter(of_kind("ScaledObject").values())))
    scaled["spec"]["minReplicaCont"] = 2
    assert ScaledObject.model_validate(scaled).model_dump(by_alias=True, exclude_unset=True, mode="json") != scaled


def test_each_stage_is_a_deployment_scaled_on_its_own_consumer_lag() -> None:
    deployments = of_kind("Deployment")
    for stage in STAGES:
        pod = deployments[f"genguard-worker-{stage}"]["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > Settings().stage_timeout_s  # SIGTERM lets stages finish
        container = pod["containers"][0]
        assert container["args"] == ["worker", "--stages", stage]
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
        assert container["readinessProbe"]["exec"]["command"] == ["genguard", "health", "worker"]
    scaled = of_kind("ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} <= set(deployments)
    defaults = Settings()
    for obj in scaled.values():
        stage = obj["spec"]["scaleTargetRef"]["name"].removeprefix("genguard-worker-")
        trigger = obj["spec"]["triggers"][0]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == group_id(defaults, [stage])  # the group the worker joins
        assert trigger["metadata"]["topic"] == STAGE_TOPIC[stage]
    assert set(scaled) == {f"genguard-worker-{s}" for s in STAGE_TOPIC}  # audit stays at one writer


def test_frame_worker_asks_for_a_gpu_node() -> None:
    pod = of_kind("Deployment")["genguard-worker-frames"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["containers"][0]["image"] == "genguard-gpu"


def test_config_and_secrets_line_up_with_settings_and_probes() -> None:
    config = of_kind("ConfigMap")["genguard-config"]["data"]
    assert set(config) <= SETTINGS_ENV, set(config) - SETTINGS_ENV
    api = of_kind("Deployment")["genguard-api"]["spec"]["template"]["spec"]
    from pipeline.api.app import create_app

    routes = set(create_app(Settings()).openapi()["paths"])
    probes = api["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in routes
    assert probes["livenessProbe"]["httpGet"]["path"] in routes
    mounts = {m["mountPath"] for m in probes["volumeMounts"]}
    for key in ("GENGUARD_SIGN_CERT_PATH", "GENGUARD_SIGN_KEY_PATH", "GENGUARD_TRUST_ANCHORS_PATH"):
        assert str(Path(config[key]).parent) in mounts
    signing = next(v for v in api["volumes"] if v["name"] == "signing")
    assert signing["secret"]["secretName"] == "genguard-signing"
