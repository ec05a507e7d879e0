"""Kubernetes manifests (docker/kubernetes/, docs/kubernetes.md): rendered, validated offline,
and tied to the code they deploy.

No cluster runs here. Every kustomization is rendered with `kubectl kustomize`; the rendered
objects are validated against
* core Kubernetes objects: the JSON schemas of Kubernetes KUBERNETES_VERSION
  (kubernetes-validate, strict: unknown fields fail);
* Prometheus Operator objects: the typed models generated from its CRDs
  (cloudcoil.models.prometheus_operator, pydantic; unknown fields fail by round trip);
* KServe and Kubeflow training-operator objects: their SDKs' typed models (kserve,
  kubeflow-training; OpenAPI-generated), built field by field, unknown fields and wrong types
  failing; the pod templates they embed are also validated as core PodTemplates.
Then the manifests meet the code: the service is started with the rendered environment and
probed on the manifests' paths, its drain is timed against the grace period, the
PrometheusRule must hold exactly the promtool-tested rules, the training pods' commands are
parsed by torchrun's and the training CLI's own parsers.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.monitoring import (
    SERVICE_JOB,
    contract_metrics,
    dashboard,
    load_yaml,
    sample_names,
)
from tests.support.paths import (
    DASHBOARD,
    DOCKER,
    PROMETHEUS_CONFIG,
    ROOT,
    RULES_DIR,
    SHIPPED_MODEL,
    SHIPPED_REPOSITORY,
    shipped_model_available,
)
from tests.support.processes import run, tool
from tests.support.servers import LIVE, READY, start_process

KUBERNETES_VERSION = "1.32.0"  # the pinned schema version (kubectl here: 1.32)
K8S = DOCKER / "kubernetes"
DOCS = ROOT / "docs" / "kubernetes.md"
GENERATOR = ROOT / "scripts" / "gen_k8s_monitoring.py"
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
SERVE_DOCKERFILE = DOCKER / "serve.Dockerfile"

# Every kustomization a user applies (components are rendered through them).
KUSTOMIZATIONS = [
    "storage",
    "overlays/cpu",
    "overlays/gpu",
    "kserve",
    "kserve-gpu",
    "training/pytorchjob",
    "training/indexed-job",
    "training/export",
]
# Rendered only through the overlays (no namespace, no image of its own).
BASES = ["base"]
SERVING = ["overlays/cpu", "overlays/gpu"]
KSERVE = ["kserve", "kserve-gpu"]
NAMESPACE = "awnet"

CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}
PROMETHEUS_OPERATOR = "monitoring.coreos.com"
KSERVE_GROUP = "serving.kserve.io"
TRAINING_OPERATOR = "kubeflow.org"


# ------------------------------------------------------------------------------ render
def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: run `sudo scripts/install_system_deps.sh`", pytrace=False)
    return found


@functools.cache
def kustomize_version() -> tuple[int, ...]:
    out = run([kubectl(), "version", "--client"]).stdout
    m = re.search(r"Kustomize Version: v(\d+)\.(\d+)", out)
    assert m, f"no kustomize version in `kubectl version --client`: {out}"
    return tuple(int(x) for x in m.groups())


@functools.cache
def render(name: str) -> tuple[dict, ...]:
    """`kubectl kustomize docker/kubernetes/<name>` (default load restrictor), parsed."""
    out = run([kubectl(), "kustomize", str(K8S / name)], timeout=120).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def objects(name: str, kind: str) -> list[dict]:
    return [d for d in render(name) if d["kind"] == kind]


def one(name: str, kind: str, obj_name: str | None = None) -> dict:
    found = [d for d in objects(name, kind) if obj_name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{name}: expected one {kind} {obj_name or ''}, found {len(found)}"
    return found[0]


def group_of(doc: dict) -> str:
    api = doc["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod template an object holds."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
        return [(kind, spec["template"]["spec"])]
    if kind == "PyTorchJob":
        return [(f"PyTorchJob {r}", s["template"]["spec"])
                for r, s in spec["pytorchReplicaSpecs"].items()]
    if kind == "ServingRuntime":
        return [("ServingRuntime", spec)]
    if kind == "InferenceService":
        pred = dict(spec["predictor"])
        model = pred.pop("model")
        return [("InferenceService predictor", {**pred, "containers": [model]})]
    return []


def containers_of(doc: dict) -> list[dict]:
    return [c for _, ps in pod_specs(doc) for c in ps.get("containers", [])]


def configmap_data(name: str, prefix: str = "awnet-settings") -> dict[str, str]:
    maps = [d for d in objects(name, "ConfigMap") if d["metadata"]["name"].startswith(prefix)]
    assert len(maps) == 1, f"{name}: one ConfigMap {prefix}-<hash> expected"
    return maps[0]["data"]


def rendered_env(name: str, container: dict, secrets: dict[str, str]) -> dict[str, str]:
    """The environment a container gets: envFrom ConfigMaps, then env (Secrets from `secrets`)."""
    env: dict[str, str] = {}
    maps = {d["metadata"]["name"]: d["data"] for d in objects(name, "ConfigMap")}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in maps, f"{name}: envFrom names ConfigMap {ref}, which is not rendered"
        env.update(maps[ref])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[f"{ref['name']}/{ref['key']}"]
    return env


def serving_container(name: str) -> dict:
    if name in KSERVE:
        (c,) = one(name, "ServingRuntime")["spec"]["containers"]
    else:
        (c,) = one(name, "Deployment", "awnet")["spec"]["template"]["spec"]["containers"]
    return c


def serving_pod(name: str) -> dict:
    """The serving pod's spec (KServe: the InferenceService's pod fields + the runtime's)."""
    if name in KSERVE:
        sr = one(name, "ServingRuntime")["spec"]
        pred = one(name, "InferenceService")["spec"]["predictor"]
        return {**{k: v for k, v in pred.items() if k != "model"}, **sr}
    return one(name, "Deployment", "awnet")["spec"]["template"]["spec"]


def container_port(container: dict, ref: Any) -> int:
    if isinstance(ref, int):
        assert ref in {p["containerPort"] for p in container["ports"]}, f"no container port {ref}"
        return ref
    (port,) = [p["containerPort"] for p in container["ports"] if p.get("name") == ref]
    return port


def seconds_of_prestop(container: dict) -> float:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, f"preStop is not a pause: {command}"
    return float(command[1])


def test_kubectl_has_kustomize_components():
    # components (kind: Component) and `labels` need kustomize v5 (kubectl >= 1.27)
    assert kustomize_version() >= (5, 0), kustomize_version()


def test_every_kustomization_is_listed_here():
    found = set()
    for path in K8S.rglob("kustomization.yaml"):
        if load_yaml(path)["kind"] == "Kustomization":
            found.add(str(path.parent.relative_to(K8S)))
    assert found == set(KUSTOMIZATIONS) | set(BASES)
    for name in BASES:
        assert render(name)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renders_into_one_namespace(name):
    docs = render(name)
    assert docs
    for d in docs:
        if d["kind"] == "Namespace":
            assert d["metadata"]["name"] == NAMESPACE
        else:
            assert d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']} {d['metadata']}"
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "awnet-serve"


def test_the_default_load_restrictor_is_enough():
    """No kustomization loads a file outside its own folder (kubectl apply -k has no
    --load-restrictor): the generated monitoring files stand in for ../../grafana paths."""
    for path in K8S.rglob("kustomization.yaml"):
        text = path.read_text()
        assert "LoadRestrictionsNone" not in text
        for ref in re.findall(r"^\s*-\s*(\S+\.(?:ya?ml|json|env))\s*$", text, flags=re.M):
            target = (path.parent / ref).resolve()
            assert target.is_relative_to(path.parent.resolve()), f"{path}: {ref}"


# -------------------------------------------------------------------- core objects
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_core_objects_validate_against_kubernetes_schemas(name):
    import kubernetes_validate

    known_crds = {PROMETHEUS_OPERATOR, KSERVE_GROUP, TRAINING_OPERATOR}
    checked = 0
    for d in render(name):
        group = group_of(d)
        if group in known_crds:
            continue
        assert group in CORE_GROUPS, f"{d['kind']} {d['apiVersion']}: no validation for it here"
        try:
            kubernetes_validate.validate(d, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {d['kind']} {d['metadata']['name']}: {exc}", pytrace=False)
        checked += 1
    # pod templates embedded in custom resources, as core PodTemplates
    for d in render(name):
        if group_of(d) not in {KSERVE_GROUP, TRAINING_OPERATOR}:
            continue
        for where, spec in pod_specs(d):
            if d["kind"] == "InferenceService":
                continue  # KServe-only fields beside pod fields: its typed model checks them
            pod_fields = {k: v for k, v in spec.items()
                          if k in {"containers", "volumes", "tolerations", "nodeSelector",
                                   "affinity", "imagePullSecrets", "securityContext",
                                   "automountServiceAccountToken", "enableServiceLinks",
                                   "subdomain", "restartPolicy"}}
            template = {"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": d["metadata"]["name"]},
                        "template": {"spec": pod_fields}}
            try:
                kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {where} of {d['metadata']['name']}: {exc}", pytrace=False)
            checked += 1
    assert checked


def test_strict_validation_catches_an_unknown_field():
    import kubernetes_validate

    bad = json.loads(json.dumps(one("overlays/cpu", "Deployment")))
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


# ----------------------------------------------------------- custom resources: typed
def prometheus_operator_model(doc: dict):
    from cloudcoil.models.prometheus_operator import v1

    model = getattr(v1, doc["kind"]).model_validate(doc)
    back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert back == doc, (
        f"{doc['kind']} {doc['metadata']['name']}: fields the CRD does not know were dropped:\n"
        f"{json.dumps(doc, sort_keys=True)}\nvs\n{json.dumps(back, sort_keys=True)}"
    )
    return model


@pytest.mark.parametrize("name", SERVING + KSERVE)
def test_prometheus_operator_objects_validate(name):
    kinds = [d["kind"] for d in render(name) if group_of(d) == PROMETHEUS_OPERATOR]
    assert "PrometheusRule" in kinds
    assert ("PodMonitor" if name in KSERVE else "ServiceMonitor") in kinds
    for d in render(name):
        if group_of(d) == PROMETHEUS_OPERATOR:
            prometheus_operator_model(d)


def test_prometheus_operator_models_refuse_bad_fields():
    from pydantic import ValidationError

    sm = json.loads(json.dumps(one("overlays/cpu", "ServiceMonitor")))
    sm["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(ValidationError):
        prometheus_operator_model(sm)
    sm = json.loads(json.dumps(one("overlays/cpu", "ServiceMonitor")))
    sm["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(AssertionError, match="dropped"):
        prometheus_operator_model(sm)


_NATIVE = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


def openapi_model(data: Any, type_name: str, modules: list, path: str = "$") -> Any:
    """An OpenAPI-generator model (kserve, kubeflow-training, kubernetes) built from YAML
    data: every key must be one of the model's fields, every value of the field's type; the
    model's constructor then runs its own checks (required fields, enumerations)."""
    if type_name.startswith("list["):
        assert isinstance(data, list), f"{path}: expected a list"
        return [openapi_model(v, type_name[5:-1], modules, f"{path}[{i}]")
                for i, v in enumerate(data)]
    m = re.fullmatch(r"dict\(([^,]*), (.*)\)", type_name)
    if m:
        assert isinstance(data, dict), f"{path}: expected a map"
        return {k: openapi_model(v, m.group(2), modules, f"{path}.{k}") for k, v in data.items()}
    if type_name == "object":
        return data
    if type_name in _NATIVE:
        ok = isinstance(data, _NATIVE[type_name]) and not (
            isinstance(data, bool) and type_name != "bool")
        assert ok, f"{path}: {data!r} is not a {type_name}"
        return data
    cls = next((getattr(mod, type_name) for mod in modules if hasattr(mod, type_name)), None)
    assert cls is not None, f"{path}: no model {type_name}"
    assert isinstance(data, dict), f"{path}: expected an object ({type_name})"
    fields = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(fields))
    assert not unknown, f"{path}: {type_name} has no field {unknown}"
    kwargs = {fields[k]: openapi_model(v, cls.openapi_types[fields[k]], modules, f"{path}.{k}")
              for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        pytest.fail(f"{path}: {type_name}: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def kserve_models():
    """kserve.models without the kserve package's __init__ (which starts importing a model
    server: fastapi, grpc, ...): kserve is installed with --no-deps, for its typed models."""
    try:
        dist = importlib.metadata.distribution("kserve")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("kserve not installed: `make setup` installs it (pyproject.toml, "
                    "[tool.awnet-serve] no-deps)", pytrace=False)
    saved = {k: v for k, v in sys.modules.items() if k == "kserve" or k.startswith("kserve.")}
    for k in saved:
        del sys.modules[k]
    stub = types.ModuleType("kserve")
    stub.__path__ = [str(Path(dist.locate_file("kserve")))]
    sys.modules["kserve"] = stub
    try:
        import kubernetes.client.models as k8s_models

        yield [importlib.import_module("kserve.models"), k8s_models]
    finally:
        for k in [k for k in sys.modules if k == "kserve" or k.startswith("kserve.")]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.parametrize("name", KSERVE)
def test_kserve_objects_validate(name, kserve_models):
    kinds = {"ServingRuntime": "V1alpha1ServingRuntime",
             "InferenceService": "V1beta1InferenceService"}
    found = set()
    for d in render(name):
        if group_of(d) == KSERVE_GROUP:
            assert d["kind"] in kinds, d["kind"]
            openapi_model(d, kinds[d["kind"]], kserve_models)
            found.add(d["kind"])
    assert found == set(kinds)
    with pytest.raises(AssertionError, match="has no field"):
        bad = json.loads(json.dumps(one(name, "InferenceService")))
        bad["spec"]["predictor"]["model"]["storageURI"] = "pvc://x"
        openapi_model(bad, kinds["InferenceService"], kserve_models)


@pytest.mark.parametrize("name", ["training/pytorchjob"])
def test_training_operator_objects_validate(name):
    import kubeflow.training.models as kf
    import kubernetes.client.models as k8s_models

    job = one(name, "PyTorchJob")
    openapi_model(job, "KubeflowOrgV1PyTorchJob", [kf, k8s_models])
    with pytest.raises(AssertionError, match="has no field"):
        bad = json.loads(json.dumps(job))
        bad["spec"]["nprocPerNodes"] = "1"
        openapi_model(bad, "KubeflowOrgV1PyTorchJob", [kf, k8s_models])


# ----------------------------------------------------------- serving: tied to the code
def service_settings() -> set[str]:
    from service.settings import ENV_PREFIX, Settings

    return {ENV_PREFIX + f.upper() for f in Settings.model_fields}


@pytest.mark.parametrize("name", SERVING + KSERVE)
def test_every_awnet_variable_is_a_service_setting(name):
    from service.settings import unknown_env_vars

    settings = service_settings()
    names = set(configmap_data(name))
    names |= {v["name"] for v in serving_container(name).get("env", [])}
    awnet = {n for n in names if n.startswith("AWNET_")}
    assert awnet, name
    assert awnet <= settings, f"not settings of service/settings.py: {sorted(awnet - settings)}"
    assert unknown_env_vars(dict.fromkeys(awnet, "x")) == []


@pytest.mark.parametrize("name", SERVING + KSERVE)
def test_ports_probes_and_mounts_match_the_settings(name):
    c, pod = serving_container(name), serving_pod(name)
    env = configmap_data(name)
    port = int(env["AWNET_PORT"])
    assert env["AWNET_HOST"] == "0.0.0.0"  # the kubelet probes the pod's address
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert container_port(c, get["port"]) == port, f"{probe} port"
    assert c["startupProbe"]["httpGet"]["path"] == READY  # warm-up = not ready yet
    assert c["readinessProbe"]["httpGet"]["path"] == READY
    assert c["livenessProbe"]["httpGet"]["path"] == LIVE
    if name in KSERVE:
        # KServe's storage initializer (or pvc:// mount) puts the model at /mnt/models
        assert env["AWNET_MODEL_REPOSITORY"] == "/mnt/models"
        assert port == 8080  # KServe's predictor port
    else:
        (service,) = objects(name, "Service")
        (sport,) = service["spec"]["ports"]
        assert container_port(c, sport["targetPort"]) == port
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        mount = mounts[env["AWNET_MODEL_REPOSITORY"]]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["persistentVolumeClaim"]["readOnly"] is True
    # Kubernetes' service links would put <SERVICE>_PORT=tcp://... under AWNET_*
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", SERVING + KSERVE)
def test_non_root_read_only_and_the_api_key_from_a_secret(name):
    c, pod = serving_container(name), serving_pod(name)
    m = re.search(r"^USER (\d+):(\d+)$", SERVE_DOCKERFILE.read_text(), flags=re.M)
    assert m, "serve.Dockerfile has no numeric USER"
    ctx = {**pod.get("securityContext", {}), **c["securityContext"]}
    assert ctx["runAsNonRoot"] is True
    assert (ctx["runAsUser"], ctx["runAsGroup"]) == (int(m.group(1)), int(m.group(2)))
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    (key,) = [v for v in c["env"] if v["name"] == "AWNET_API_KEY"]
    assert key["valueFrom"]["secretKeyRef"] == {"name": "awnet-api-key", "key": "api-key"}
    assert "AWNET_API_KEY" not in configmap_data(name)
    # /tmp is the only writable place (the read-only root has none)
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


@pytest.mark.parametrize("name", SERVING + KSERVE)
def test_drain_fits_inside_the_grace_period(name):
    c, pod = serving_container(name), serving_pod(name)
    env = configmap_data(name)
    prestop = seconds_of_prestop(c)
    delay, timeout = float(env["AWNET_SHUTDOWN_DELAY_S"]), float(env["AWNET_SHUTDOWN_TIMEOUT_S"])
    grace = pod["terminationGracePeriodSeconds"]
    # the grace period counts from the start of preStop; leave 5 s for the exit itself
    assert prestop + delay + timeout + 5 <= grace, (prestop, delay, timeout, grace)
    # endpoints must have gone before the drain starts refusing: a pause of a few seconds
    assert prestop >= 3
    # a request accepted before the drain can run its whole time limit
    assert timeout >= float(env["AWNET_REQUEST_TIMEOUT_S"])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert m, quantity
    return int(m.group(1)) * units[m.group(2)]


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory):
    if shipped_model_available():
        return SHIPPED_REPOSITORY, SHIPPED_MODEL
    from tests.support.fake_model import FAKE_MODEL, write_model_version

    repo = tmp_path_factory.mktemp("k8s-model-repository")
    write_model_version(repo, FAKE_MODEL, "1")
    return repo, FAKE_MODEL


@pytest.mark.parametrize("name", ["overlays/cpu", "overlays/gpu", "kserve"])
def test_service_runs_with_the_rendered_environment(name, model_repository, tmp_path):
    """`python -m service` with exactly the pod's environment (only the bind address, the
    port and the repository folder are this machine's), probed on the manifests' paths, then
    stopped as the kubelet stops it: SIGTERM, readiness off, exit 0 within the drain."""
    repo, model = model_repository
    c, pod = serving_container(name), serving_pod(name)
    env = rendered_env(name, c, secrets={"awnet-api-key/api-key": "k8s-test-key"})
    # the container's own values, checked by test_ports_probes_and_mounts_match_the_settings
    for var in ("AWNET_HOST", "AWNET_PORT", "AWNET_MODEL_REPOSITORY"):
        env.pop(var)
    env["OMP_NUM_THREADS"] = "1"
    started = time.monotonic()
    with start_process(repo, env, log_path=tmp_path / "service.log") as server:
        to_ready = time.monotonic() - started
        log = server.logs()
        assert "ignoring unknown setting" not in log, log
        with server.client() as client:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                path = c[probe]["httpGet"]["path"]
                assert client.get(path).status_code == 200, path
            # the Secret's key reached the service: inference needs it, probes and metrics not
            infer = f"/v2/models/{model}/infer"
            assert client.post(infer, json={}).status_code == 401
            authed = client.post(infer, json={},
                                 headers={"Authorization": "Bearer k8s-test-key"})
            assert authed.status_code == 400  # past the key, refused for the empty body
            metrics = client.get("/metrics")
            assert metrics.status_code == 200
            for series in adapter_series():
                assert series in metrics.text, series
        # the startup probe's budget against this start (ready from the process start)
        startup = c["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= 5 * to_ready, (budget, to_ready)
        # the memory request against what this process holds once ready
        rss = _rss_mib(server.proc.pid)
        assert _mebibytes(c["resources"]["requests"]["memory"]) >= 1.5 * rss, rss
        # the kubelet's stop: SIGTERM once the preStop pause is over
        delay = float(env["AWNET_SHUTDOWN_DELAY_S"])
        drain = delay + float(env["AWNET_SHUTDOWN_TIMEOUT_S"])
        statuses = []
        t0 = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        while server.proc.poll() is None and time.monotonic() - t0 < drain + 5:
            with contextlib.suppress(httpx.HTTPError):
                statuses.append(httpx.get(server.url + READY, timeout=1.0).status_code)
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert server.proc.poll() == 0, server.logs()
        assert took <= drain, (took, drain)
        assert 503 in statuses, statuses  # readiness off while still serving (the delay)
        assert pod["terminationGracePeriodSeconds"] >= seconds_of_prestop(c) + took


def test_deployment_rolls_one_pod_at_a_time_and_keeps_capacity():
    dep = one("overlays/cpu", "Deployment")
    assert "replicas" not in dep["spec"]  # the HPA owns it
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pdb, hpa = one("overlays/cpu", "PodDisruptionBudget"), one("overlays/cpu", "HorizontalPodAutoscaler")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (service,) = objects("overlays/cpu", "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert hpa["spec"]["minReplicas"] >= 2  # an eviction never takes the last pod
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])


@pytest.mark.parametrize("name", SERVING + KSERVE)
def test_images(name):
    c = serving_container(name)
    tag = "gpu" if name.endswith("gpu") else "cpu"
    assert c["image"] == f"awnet-serve:{tag}"
    providers = configmap_data(name)["AWNET_PROVIDERS"]
    assert providers == ("cuda,cpu" if tag == "gpu" else "cpu")
    gpus = c["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus is not None) == (tag == "gpu")


# ------------------------------------------------------------------ monitoring ties
def test_generated_monitoring_files_are_current():
    proc = run([sys.executable, str(GENERATOR), "--check"], check=False)
    assert proc.returncode == 0, proc.stderr


def test_prometheus_rule_holds_exactly_the_promtool_tested_rules():
    groups = [g for path in sorted(RULES_DIR.glob("*.yml")) for g in load_yaml(path)["groups"]]
    for name in SERVING + KSERVE:
        rule = one(name, "PrometheusRule")
        assert rule["spec"]["groups"] == groups


def test_dashboard_and_datasource_configmaps_come_from_the_compose_files():
    cm = one("overlays/cpu", "ConfigMap", "awnet-grafana-dashboard")
    assert cm["data"] == {DASHBOARD.name: DASHBOARD.read_text()}
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    ds = one("overlays/cpu", "ConfigMap", "awnet-grafana-datasource")
    assert ds["metadata"]["labels"]["grafana_datasource"] == "1"
    (provisioning,) = ds["data"].values()
    (source,) = yaml.safe_load(provisioning)["datasources"]
    uids = {d["datasource"]["uid"] for d in dashboard()["templating"]["list"]
            if isinstance(d.get("datasource"), dict)}
    assert uids == {source["uid"]}
    assert source["isDefault"] is False  # the cluster's Grafana has its own default
    assert source["url"].startswith("http://") and ".svc" in source["url"]


def _compose_scrape() -> tuple[dict, dict]:
    cfg = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == SERVICE_JOB]
    return cfg["global"], job


def _rules_jobs() -> set[str]:
    text = "\n".join(p.read_text() for p in RULES_DIR.glob("*.yml"))
    return set(re.findall(r'job="([^"]+)"', text))


def _check_scrape_endpoint(endpoint: dict) -> None:
    glob, job = _compose_scrape()
    assert endpoint["path"] == job["metrics_path"]
    assert endpoint["interval"] == glob["scrape_interval"]
    assert endpoint["scrapeTimeout"] == glob["scrape_timeout"]
    # the service's own `endpoint` label must win over the operator's target label
    assert endpoint["honorLabels"] is True
    (relabel,) = endpoint["relabelings"]
    assert relabel["targetLabel"] == "job" and relabel["replacement"] == SERVICE_JOB
    assert _rules_jobs() == {SERVICE_JOB}
    compose = [{"action": r["action"], "sourceLabels": r["source_labels"], "regex": r["regex"]}
               for r in job["metric_relabel_configs"]]
    assert endpoint["metricRelabelings"] == compose


def test_servicemonitor_scrapes_the_service_as_compose_does():
    sm = one("overlays/cpu", "ServiceMonitor")
    (service,) = objects("overlays/cpu", "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    _check_scrape_endpoint(endpoint)


def test_podmonitor_scrapes_the_kserve_predictor():
    pm = one("kserve", "PodMonitor")
    isvc = one("kserve", "InferenceService")
    assert pm["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in serving_container("kserve")["ports"]}
    _check_scrape_endpoint(endpoint)


def adapter_rules() -> list[dict]:
    return load_yaml(ADAPTER_VALUES)["rules"]["custom"]


def adapter_series() -> set[str]:
    return {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", r["seriesQuery"]).group(0)
            for r in adapter_rules()}


def test_hpa_metrics_are_the_adapter_rules_on_the_service_series(tmp_path):
    hpa = one("overlays/cpu", "HorizontalPodAutoscaler")
    kinds = {m["type"] for m in hpa["spec"]["metrics"]}
    assert kinds == {"Resource", "Pods"}
    pods_metrics = {m["pods"]["metric"]["name"]: m["pods"]["target"]
                    for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    assert set(pods_metrics) == {r["name"]["as"] for r in adapter_rules()}
    # the queue target is one full batch per pod
    batch = int(configmap_data("overlays/cpu")["AWNET_MAX_BATCH_SIZE"])
    assert pods_metrics["awnet_queue_depth"] == {"type": "AverageValue", "averageValue": str(batch)}
    assert adapter_series() <= sample_names(contract_metrics())
    recording = []
    for r in adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", r["seriesQuery"]).group(0)
        assert re.search(r["name"]["matches"], series), r
        assert set(r["resources"]["overrides"]) == {"namespace", "pod"}
        query = (r["metricsQuery"].replace("<<.Series>>", series)
                 .replace("<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"awnet-.*"')
                 .replace("<<.GroupBy>>", "pod"))
        assert "<<" not in query, query
        recording.append({"record": f"adapter_check:{r['name']['as']}", "expr": query})
    path = tmp_path / "adapter-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": recording}]}))
    assert "SUCCESS" in run([tool("promtool"), "check", "rules", str(path)]).stdout


# ------------------------------------------------------------------------- KServe ties
def test_kserve_runtime_serves_our_artifact_over_protocol_v2():
    sr, isvc = one("kserve", "ServingRuntime"), one("kserve", "InferenceService")
    assert sr["spec"]["protocolVersions"] == ["v2"]
    (fmt,) = sr["spec"]["supportedModelFormats"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"] == {"name": fmt["name"], "version": fmt["version"]}
    assert model["runtime"] == sr["metadata"]["name"] and model["protocolVersion"] == "v2"
    assert [c["name"] for c in sr["spec"]["containers"]] == ["kserve-container"]
    assert isvc["metadata"]["name"] == SHIPPED_MODEL
    # the storage URI points at a folder in the repository layout: the models volume's
    # repository/ (what the Deployment mounts at AWNET_MODEL_REPOSITORY)
    dep = one("overlays/cpu", "Deployment")
    (mount,) = [m for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                if m["mountPath"] == configmap_data("overlays/cpu")["AWNET_MODEL_REPOSITORY"]]
    (volume,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert model["storageUri"] == f"pvc://{claim}/{mount['subPath']}"


# --------------------------------------------------------------------- storage ties
def test_every_claim_is_a_volume_of_the_storage_kustomization():
    claims = {d["metadata"]["name"]: d for d in objects("storage", "PersistentVolumeClaim")}
    used = set()
    for name in KUSTOMIZATIONS:
        for d in render(name):
            for _, spec in pod_specs(d):
                used |= {v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", [])
                         if "persistentVolumeClaim" in v}
            uri = d.get("spec", {}).get("predictor", {}).get("model", {}).get("storageUri", "")
            if uri.startswith("pvc://"):
                used.add(uri.removeprefix("pvc://").split("/")[0])
    assert used == set(claims)
    for claim in claims.values():  # mounted by pods on several nodes at once
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_pod_meets_the_restricted_pod_security_standard(name):
    for d in render(name):
        for where, spec in pod_specs(d):
            for c in spec["containers"]:
                if d["kind"] == "InferenceService":
                    continue  # its container is the ServingRuntime's
                ctx = {**spec.get("securityContext", {}), **c.get("securityContext", {})}
                assert ctx.get("runAsNonRoot") is True, where
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
                assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where
            if d["kind"] != "ServingRuntime":  # no such field: the InferenceService sets it
                assert spec["enableServiceLinks"] is False, where
    if name == "storage":
        (ns,) = objects(name, "Namespace")
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# ------------------------------------------------------------------------ training ties
def _run_container_script(container: dict, env: dict[str, str], stub: str,
                          tmp_path: Path) -> list[str]:
    """Run the container's `bash -c` script here with `stub` (torchrun or python) replaced
    by a recorder on PATH; return the argv it was given."""
    assert container["command"] == ["/bin/bash", "-c"]
    (script,) = container["args"]
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    argv_file = tmp_path / "argv.json"
    recorder = bindir / stub
    recorder.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))\n"
    )
    recorder.chmod(0o755)
    full_env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", **env}
    proc = subprocess.run(["bash", "-c", script], env=full_env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(argv_file.read_text())


def _container_env(container: dict, **fields: str) -> dict[str, str]:
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
        else:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            env[var["name"]] = fields[path]
    return env


def _check_training_argv(argv: list[str], run_dir: Path, resumed: bool) -> Any:
    """torchrun's own parser, then the training CLI's (which resolves the recipe)."""
    from torch.distributed.run import get_args_parser

    from training.cli import build_parser

    ns = get_args_parser().parse_args(argv)
    assert ns.module and ns.training_script == "training"
    args = build_parser().parse_args(ns.training_script_args)
    assert args.command == "train"
    assert args.out == str(run_dir)
    assert args.resume == (str(run_dir / "last.pt") if resumed else None)
    return ns


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_pytorchjob_runs_torchrun_on_the_operators_rendezvous(resumed, tmp_path, monkeypatch):
    job = one("training/pytorchjob", "PyTorchJob")
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1
    assert specs["Master"]["template"] == specs["Worker"]["template"]
    (c,) = specs["Master"]["template"]["spec"]["containers"]
    assert c["name"] == "pytorch"  # the operator's container
    assert any(p["name"] == "pytorchjob-port" for p in c["ports"])
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    env = _container_env(c)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if resumed:
        (run_dir / "last.pt").write_bytes(b"")
    assert env["RUN_DIR"].startswith("/workspace/runs/") and "/workspace/runs" in mounts
    env["RUN_DIR"] = str(run_dir)
    # what the training operator puts into a Worker's environment (torchrun reads PET_*)
    nodes = sum(s["replicas"] for s in specs.values())
    operator = {"PET_NNODES": str(nodes), "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "awnet-train-master-0",
                "PET_MASTER_PORT": "23456", "PET_NPROC_PER_NODE": job["spec"]["nprocPerNode"]}
    argv = _run_container_script(c, {**env, **operator}, "torchrun", tmp_path)
    for k, v in operator.items():
        monkeypatch.setenv(k, v)
    ns = _check_training_argv(argv, run_dir, resumed)
    assert (ns.nnodes, ns.node_rank, ns.nproc_per_node) == (str(nodes), 1, job["spec"]["nprocPerNode"])


@pytest.mark.parametrize("resumed", [False, True], ids=["fresh", "resumed"])
def test_indexed_job_runs_torchrun_with_a_static_rendezvous_at_index_0(resumed, tmp_path):
    job = one("training/indexed-job", "Job")
    (service,) = objects("training/indexed-job", "Service")
    spec, tmpl = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed"
    (c,) = tmpl["containers"]
    env = _container_env(c, **{
        "metadata.annotations['batch.kubernetes.io/job-completion-index']": "1"})
    assert int(env["NNODES"]) == spec["completions"] == spec["parallelism"]
    # index 0's stable name: <job>-0.<subdomain>, the subdomain a headless Service
    assert tmpl["subdomain"] == service["metadata"]["name"]
    assert env["MASTER_HOST"] == f"{job['metadata']['name']}-0.{tmpl['subdomain']}"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    (sport,) = service["spec"]["ports"]
    assert container_port(c, sport["targetPort"]) == sport["port"] == int(env["MASTER_PORT"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if resumed:
        (run_dir / "last.pt").write_bytes(b"")
    env["RUN_DIR"] = str(run_dir)
    argv = _run_container_script(c, env, "torchrun", tmp_path)
    ns = _check_training_argv(argv, run_dir, resumed)
    assert (ns.nnodes, ns.node_rank, ns.master_addr, ns.master_port) == (
        env["NNODES"], 1, env["MASTER_HOST"], int(env["MASTER_PORT"]))
    assert ns.rdzv_backend == "static"


def test_indexed_job_and_pytorchjob_train_the_same_way():
    (pt,) = one("training/pytorchjob", "PyTorchJob")["spec"]["pytorchReplicaSpecs"]["Master"][
        "template"]["spec"]["containers"]
    (ij,) = one("training/indexed-job", "Job")["spec"]["template"]["spec"]["containers"]
    for key in ("image", "resources", "volumeMounts", "securityContext"):
        assert pt[key] == ij[key], key
    shared = {"RECIPE", "RUN_DIR", "AWNET_DATA_ROOT", "HOME", "OMP_NUM_THREADS"}
    assert {k: v for k, v in _container_env(pt).items() if k in shared} == {
        k: v for k, v in _container_env(ij, **{
            "metadata.annotations['batch.kubernetes.io/job-completion-index']": "0"}).items()
        if k in shared}
    assert pt["image"] == "awnet-train:local"


def test_export_job_writes_a_new_version_into_the_served_repository(tmp_path):
    job = one("training/export", "Job")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env = _container_env(c)
    repo = tmp_path / "repository"
    script_env = {**env}
    (script,) = c["args"]
    c = {**c, "args": [script.replace("/workspace/models/repository", str(repo))]}
    argv = _run_container_script(c, script_env, "python", tmp_path)
    assert argv[:3] == ["-m", "training", "export"]
    from training.cli import build_parser

    args = build_parser().parse_args(argv[2:])
    assert args.checkpoint == env["CHECKPOINT"]
    assert args.out == str(repo / env["MODEL_NAME"] / env["VERSION"])
    # an existing version is never overwritten
    (repo / env["MODEL_NAME"] / env["VERSION"]).mkdir(parents=True)
    proc = subprocess.run(["bash", "-c", c["args"][0]], env={**os.environ, **script_env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "refusing to overwrite" in proc.stderr
    # it writes where the servers read: the same volume and subPath
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    dep = one("overlays/cpu", "Deployment")["spec"]["template"]["spec"]
    serve_mount = next(m for m in dep["containers"][0]["volumeMounts"] if m["mountPath"] == "/models")
    serve_claim = next(v for v in dep["volumes"] if v["name"] == serve_mount["name"])
    export_mount = mounts["/workspace/models/repository"]
    export_claim = next(v for v in job["spec"]["template"]["spec"]["volumes"]
                        if v["name"] == export_mount["name"])
    assert export_mount["subPath"] == serve_mount["subPath"]
    assert (export_claim["persistentVolumeClaim"]["claimName"]
            == serve_claim["persistentVolumeClaim"]["claimName"])
    assert not export_mount.get("readOnly")


# ------------------------------------------------------------------------------ docs
def test_docs_cover_every_kustomization_and_alert():
    text = DOCS.read_text()
    for name in KUSTOMIZATIONS:
        assert f"docker/kubernetes/{name}" in text, name
    alerts = {r["alert"] for p in RULES_DIR.glob("*.yml") for g in load_yaml(p)["groups"]
              for r in g["rules"] if "alert" in r}
    for alert in alerts:
        assert f"`{alert}`" in text, f"docs/kubernetes.md does not say what {alert} means"
    assert KUBERNETES_VERSION in text
    assert "no cluster" in text.lower()
