"""The Helm chart and the image definition, checked offline with the tools scripts/install.sh installs.

helm lint --strict and helm template run on every ci value set; rendered built-in resources are validated
with kubernetes-validate --strict; CRD instances (RayCluster, ScaledObject, TriggerAuthentication,
ServiceMonitor, GRPCRoute) have no schema offline, so their apiVersion, kind and key fields are checked here
instead. A missing tool fails the test: nothing is skipped.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "embedfleet"
BIN = Path(sys.executable).parent
HELM = BIN / "helm"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
# Instances of CustomResourceDefinitions: kubernetes-validate only knows built-in kinds.
CRD_KINDS = {
    ("ray.io/v1", "RayCluster"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("gateway.networking.k8s.io/v1", "GRPCRoute"),
}
Manifest = dict[str, Any]


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, check=False)


def _values_args(values: Path | None, sets: tuple[str, ...]) -> list[str]:
    args = ["-f", str(values)] if values else []
    for item in sets:
        args += ["--set", item]
    return args


@functools.cache
def render(values: Path | None = None, sets: tuple[str, ...] = ()) -> list[Manifest]:
    """The manifests `helm template` renders (test hooks included), cached per value set."""
    result = _run(HELM, "template", "rel", CHART, "--namespace", "ml", *_values_args(values, sets))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def pod_specs(manifests: list[Manifest]) -> list[tuple[str, Manifest]]:
    """(name, pod spec) of every pod the manifests create, including RayCluster groups and test pods."""
    specs: list[tuple[str, Manifest]] = []
    for m in manifests:
        name = f"{m['kind']}/{m['metadata']['name']}"
        if m["kind"] == "Pod":
            specs.append((name, m["spec"]))
        elif m["kind"] == "Deployment":
            specs.append((name, m["spec"]["template"]["spec"]))
        elif m["kind"] == "RayCluster":
            specs.append((f"{name}/head", m["spec"]["headGroupSpec"]["template"]["spec"]))
            for group in m["spec"]["workerGroupSpecs"]:
                specs.append((f"{name}/{group['groupName']}", group["template"]["spec"]))
    return specs


def env_of(container: Manifest) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def config_toml(manifests: list[Manifest]) -> dict[str, Any]:
    (configmap,) = [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-config")]
    return tomllib.loads(configmap["data"]["embedfleet.toml"])


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "defaults")
def test_lint_strict(values: Path | None) -> None:
    result = _run(HELM, "lint", "--strict", CHART, *_values_args(values, ()))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=lambda p: p.name if p else "defaults")
def test_rendered_manifests_validate(values: Path | None, tmp_path: Path) -> None:
    manifests = render(values)
    builtin = [m for m in manifests if (m["apiVersion"], m["kind"]) not in CRD_KINDS]
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    result = _run(BIN / "kubernetes-validate", "--strict", "--quiet", path)
    assert result.returncode == 0, result.stdout + result.stderr
    for m in manifests:
        assert m["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel", m["metadata"]["name"]


def test_value_sets_cover_the_deployment_shapes() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "celery-cpu-values.yaml",
        "celery-gpu-keda-values.yaml",
        "ray-values.yaml",
        "external-redis-milvus-values.yaml",
    }


def test_rendered_config_is_read_by_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TOML the chart writes loads into the gateway's and the worker's settings classes unchanged."""
    from embedfleet.gateway.settings import GatewaySettings
    from embedfleet.worker.settings import WorkerSettings

    for values in CI_VALUES:
        configmap = [m for m in by_kind(render(values), "ConfigMap") if m["metadata"]["name"].endswith("-config")]
        path = tmp_path / f"{values.stem}.toml"
        path.write_text(configmap[0]["data"]["embedfleet.toml"])
        monkeypatch.setenv("EMBEDFLEET_CONFIG", str(path))
        gateway, worker = GatewaySettings(), WorkerSettings()
        expected = config_toml(render(values))
        assert [m.name for m in gateway.models] == [m["name"] for m in expected["models"]], values.name
        assert worker.key_prefix == expected["key_prefix"]
        assert worker.visibility_timeout_seconds == expected["visibility_timeout_seconds"]


def test_schema_rejects_an_unknown_backend() -> None:
    result = _run(HELM, "template", "rel", CHART, "--set", "backend=kafka")
    assert result.returncode != 0
    assert "/backend" in result.stderr and "'celery', 'ray'" in result.stderr, result.stderr


@pytest.mark.parametrize("setting", ["gateway.replicas=-1", "workers.pools[0].name=gpu,workers.pools[0].replicas=-2"])
def test_schema_rejects_negative_replicas(setting: str) -> None:
    result = _run(HELM, "template", "rel", CHART, "--set", setting)
    assert result.returncode != 0
    assert "replicas" in result.stderr and "minimum" in result.stderr, result.stderr


def test_schema_rejects_unknown_keys() -> None:
    result = _run(HELM, "template", "rel", CHART, "--set", "gateway.replica=3")
    assert result.returncode != 0
    assert "replica" in result.stderr, result.stderr


def test_keda_scaled_object_only_when_enabled() -> None:
    assert not by_kind(render(), "ScaledObject")
    manifests = render(CHART / "ci" / "celery-gpu-keda-values.yaml")
    scaled = {m["spec"]["scaleTargetRef"]["name"]: m for m in by_kind(manifests, "ScaledObject")}
    assert set(scaled) == {"rel-embedfleet-worker-minilm", "rel-embedfleet-worker-mpnet"}
    trigger = scaled["rel-embedfleet-worker-mpnet"]["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    # kombu's global_keyprefix (embedfleet/celery_app.py) is <key_prefix>celery:, then the queue name.
    assert trigger["metadata"]["listName"] == "embedfleet:celery:embedfleet.bulk"
    assert trigger["metadata"]["listLength"] == "2"
    assert scaled["rel-embedfleet-worker-mpnet"]["spec"]["minReplicaCount"] == 0
    (auth,) = by_kind(manifests, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "embedfleet-redis", "key": "redis-password"}
    ]
    # KEDA owns the replica count of scaled pools.
    for deployment in by_kind(manifests, "Deployment"):
        if deployment["metadata"]["name"] in scaled:
            assert "replicas" not in deployment["spec"]


def test_keda_list_name_follows_the_key_prefix() -> None:
    manifests = render(
        CHART / "ci" / "celery-gpu-keda-values.yaml", ("config.keyPrefix=prod:", "config.bulkQueue=bulk")
    )
    names = {m["spec"]["triggers"][0]["metadata"]["listName"] for m in by_kind(manifests, "ScaledObject")}
    assert names == {"prod:celery:bulk"}


def test_keda_can_scale_on_the_job_stores_part_count() -> None:
    """With dispatch windows most of a big job's parts wait in the job store, not in the broker's list:
    the prometheus trigger scales on the gateway's count of every unfinished part instead."""
    values = CHART / "ci" / "celery-gpu-keda-values.yaml"
    prometheus = ("workers.keda.trigger=prometheus", "workers.keda.prometheus.serverAddress=http://prom:9090")
    for scaled in by_kind(render(values, prometheus), "ScaledObject"):
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["serverAddress"] == "http://prom:9090"
        assert 'embedfleet_parts{state=~"pending|queued|running"}' in trigger["metadata"]["query"]
    result = _run(HELM, "template", "rel", CHART, "-f", values, "--set", "workers.keda.trigger=prometheus")
    assert result.returncode != 0 and "needs keda.prometheus.serverAddress" in result.stderr, result.stderr


def test_every_pod_runs_as_non_root() -> None:
    for values in [None, *CI_VALUES]:
        for name, spec in pod_specs(render(values)):
            assert spec["securityContext"]["runAsNonRoot"] is True, name
            assert spec["securityContext"]["runAsUser"] > 0, name
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False, (name, container["name"])


def test_config_checksum_changes_with_the_config() -> None:
    def checksums(sets: tuple[str, ...]) -> set[str]:
        deployments = by_kind(render(None, sets), "Deployment")
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in deployments}

    before, after = checksums(()), checksums(("config.jobTtlSeconds=3600",))
    assert len(before) == 1 and len(after) == 1, "gateway and workers roll on the same config"
    assert before != after
    assert checksums(("gateway.replicas=3",)) == before, "a change outside the config does not roll pods"


def test_gateway_probes_use_grpc_health() -> None:
    (gateway,) = [d for d in by_kind(render(), "Deployment") if d["metadata"]["name"] == "rel-embedfleet-gateway"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 50051, "service": ""}, probe
    # Kubelet's gRPC probe has no TLS: with TLS the probe runs the smoke test in the container.
    (gateway,) = [
        d
        for d in by_kind(render(CHART / "ci" / "celery-gpu-keda-values.yaml"), "Deployment")
        if d["metadata"]["name"] == "rel-embedfleet-gateway"
    ]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert "--health-only" in container["readinessProbe"]["exec"]["command"]
    env = env_of(container)
    assert env["EMBEDFLEET_AUTH"] == "true"
    assert env["EMBEDFLEET_TLS_CERT_FILE"] == "/etc/embedfleet/tls/tls.crt"


def test_helm_test_carries_a_key_when_the_gateway_checks_keys() -> None:
    """Auth is on by default (as `embedfleet gateway` runs): `helm test` sends the key of
    auth.testKeySecret with its Embed call, or checks health only when there is none."""

    def smoke(values: Path | None = None, sets: tuple[str, ...] = ()) -> Manifest:
        (pod,) = [p for p in by_kind(render(values, sets), "Pod") if p["metadata"]["name"].endswith("test-smoke")]
        return pod["spec"]["containers"][0]

    container = smoke()
    assert "--health-only" in container["command"] and "EMBEDFLEET_API_KEY" not in env_of(container)
    container = smoke(CHART / "ci" / "celery-gpu-keda-values.yaml")
    assert "--health-only" not in container["command"]
    (key,) = [e for e in container["env"] if e["name"] == "EMBEDFLEET_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "embedfleet-test-key", "key": "api-key"}
    assert "--health-only" not in smoke(sets=("auth.enabled=false",))["command"]


def test_gpu_pools_request_gpus_and_run_one_process_per_gpu() -> None:
    manifests = render(CHART / "ci" / "celery-gpu-keda-values.yaml")
    (pool,) = [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"] == "rel-embedfleet-worker-minilm"]
    spec = pool["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["args"] == ["worker", "--concurrency", "1"]
    assert spec["terminationGracePeriodSeconds"] > 600
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert env_of(container)["EMBEDFLEET_PRELOAD_MODELS"] == '["all-MiniLM-L6-v2"]'


def test_ray_backend_renders_a_raycluster_the_gateway_joins() -> None:
    manifests = render(CHART / "ci" / "ray-values.yaml")
    assert not [d for d in by_kind(manifests, "Deployment") if "worker" in d["metadata"]["name"]]
    (cluster,) = by_kind(manifests, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["rayVersion"] == "2.60.0"
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert "template" in cluster["spec"]["headGroupSpec"]
    (group,) = cluster["spec"]["workerGroupSpecs"]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 4)
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    (gateway,) = by_kind(manifests, "Deployment")
    env = env_of(gateway["spec"]["template"]["spec"]["containers"][0])
    # KubeRay names the head Service <cluster>-head-svc; 10001 is the Ray client port.
    assert env["EMBEDFLEET_RAY_ADDRESS"] == f"ray://{cluster['metadata']['name']}-head-svc:10001"
    assert env["EMBEDFLEET_BACKEND"] == "ray"
    assert config_toml(manifests)["ray_pool_size"] == 2
    (route,) = by_kind(manifests, "GRPCRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["rules"][0]["backendRefs"][0] == {"name": "rel-embedfleet-gateway", "port": 50051}


def test_external_redis_and_milvus_come_from_secrets() -> None:
    manifests = render(CHART / "ci" / "external-redis-milvus-values.yaml")
    (gateway,) = [d for d in by_kind(manifests, "Deployment") if d["metadata"]["name"] == "rel-embedfleet-gateway"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "managed-redis", "key": "password"}}
    # $(REDIS_PASSWORD) is expanded by the kubelet; it is defined before the URL that uses it.
    assert env["EMBEDFLEET_REDIS_URL"] == "rediss://:$(REDIS_PASSWORD)@redis.prod.example.internal:6380/2"
    assert env["EMBEDFLEET_MILVUS_TOKEN"] == {"secretKeyRef": {"name": "zilliz", "key": "api-key"}}
    assert env["EMBEDFLEET_DATA_URI"] == "s3://embedfleet-datasets/prod"
    assert container["envFrom"] == [{"secretRef": {"name": "embedfleet-s3"}}]


def test_optional_dependencies_are_declared_and_gated() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    conditions = {d["name"]: d["condition"] for d in chart["dependencies"]}
    assert conditions == {"redis": "redis.enabled", "milvus": "milvus.enabled"}
    for name in conditions:
        result = _run(HELM, "template", "rel", CHART, "--set", f"{name}.enabled=true")
        assert result.returncode != 0 and "helm dependency build" in result.stderr, result.stderr


def test_ingress_speaks_grpc_to_the_gateway() -> None:
    (ingress,) = by_kind(render(CHART / "ci" / "celery-gpu-keda-values.yaml"), "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    (ingress,) = by_kind(render(None, ("gateway.ingress.enabled=true",)), "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"


def test_helm_test_pod_runs_the_smoke_test() -> None:
    manifests = render()
    (pod,) = by_kind(manifests, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][:2] == ["python", "/etc/embedfleet/scripts/smoke_test.py"]
    (scripts,) = [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith("-scripts")]
    assert scripts["data"]["smoke_test.py"] == (CHART / "files" / "smoke_test.py").read_text()


def test_dockerfile_passes_hadolint() -> None:
    result = _run(BIN / "hadolint", "--failure-threshold", "info", ROOT / "helm" / "images" / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    targets = {
        line.split()[-1]
        for line in (ROOT / "helm" / "images" / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    }
    assert {"gateway", "worker-cpu", "worker-cuda"} <= targets
