"""The serving image for real: built from docker/serve.Dockerfile, started, used (issue 15).

Builds the CPU image with scripts/build_image.sh (what `make image` runs) on buildah, the
daemonless engine (Debian package, scripts/install_system_deps.sh), on the local base that
scripts/build_base_image.sh makes and caches, then starts it as docker-compose.yml does as
far as `buildah run` allows: the image's own user and command, the model repository
mounted read-only at /models, a tmpfs on /tmp, all capabilities dropped, settings only from
AWNET_* variables, on a free loopback port (buildah run shares the host's network). It
checks readiness within a measured time, the same answers as the local service, /metrics,
the image's HEALTHCHECK, a SIGTERM drain under load, what the image holds and that the
service writes nothing outside /tmp; and prints the image's size and its start-to-ready time.

Selected with `-m image` (`make image-test`); part of `make test`. Skipped, with the reason,
only where buildah is missing and cannot be installed (not root, or no apt-get).

The shared test helpers do the rest: the service in the image and the local one are both
started with tests/support/servers.py's start_process (the image's through `buildah run`),
free_port and readiness from there too; requests, /v2 tensors and /metrics from
tests/support/v2client.py; the paths and the shipped model from tests/support/paths.py; the
embedded digits from tests/support/images.py; commands, log tails and the "fail, don't skip,
where CI installs the tool" rule from tests/support/processes.py (run, log_tail, tool).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import stat
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.support.images import mnist_digits
from tests.support.paths import (
    EMBEDDED_DIGITS,
    IMAGE_BUILD_SCRIPT,
    ROOT,
    SERVE_DOCKERFILE,
    SHIPPED_MODEL,
    SHIPPED_REPOSITORY,
    SHIPPED_VERSION,
    SHIPPED_VERSION_DIR,
    shipped_model_available,
)
from tests.support.processes import log_tail, run, tool
from tests.support.servers import Server, free_port, start_process
from tests.support.v2client import families, infer_path, json_tensor, request

TAG = os.environ.get("AWNET_IMAGE_TEST_TAG", "localhost/awnet-serve:image-test")
# The CPU-only image (docs/decisions.md, "Images: ..."): ONNX Runtime's CPU package.
BUILD_ARGS = {"CUDA_LIBS": "0", "ONNXRUNTIME": os.environ.get("AWNET_IMAGE_TEST_ONNXRUNTIME", "cpu")}
DRIVER = os.environ.get("BUILDAH_STORAGE_DRIVER", "vfs")
ENGINE = ["buildah", "--storage-driver", DRIVER]
BUILD_TIMEOUT_S = 1500
READY_LIMIT_S = 30.0  # fails beyond this; the measured figure is printed and recorded in docs
SHUTDOWN_DELAY_S = 1.0
SHUTDOWN_TIMEOUT_S = 10.0
N_DIGITS = 8
# Same settings for the image and the local service; only AWNET_* variables.
SETTINGS = {"AWNET_INTRA_OP_THREADS": "1", "AWNET_SHUTDOWN_DELAY_S": str(SHUTDOWN_DELAY_S),
            "AWNET_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S), "AWNET_LOG_FORMAT": "text"}

# slow too: `make test-fast` (-m "not slow") leaves the image out
pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 600)]


# ------------------------------------------------------------------------- engine
class BuildError(Exception):
    """The image build failed; the message ends with the build's own output."""


def require_buildah() -> None:
    """Fails where buildah is missing but installable (CI installs it), skips elsewhere."""
    tool("buildah", skip_if_uninstallable=True)


def buildah(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    return run([*ENGINE, *args], timeout=timeout, check=check)


def build_image(tag: str, log_path: Path, dockerfile: Path = SERVE_DOCKERFILE,
                timeout: float = BUILD_TIMEOUT_S) -> float:
    """Build with scripts/build_image.sh on buildah; seconds taken. BuildError on failure."""
    env = {**os.environ, "AWNET_IMAGE_ENGINE": "buildah", "IMAGE": tag,
           "DOCKERFILE": str(dockerfile), **BUILD_ARGS}
    start = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.run(["bash", str(IMAGE_BUILD_SCRIPT), "serve"], stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise BuildError(f"image build failed ({proc.returncode}), {log_path}:\n{log_tail(log_path, 40)}")
    return time.monotonic() - start


# -------------------------------------------------------------------------- helpers
def digits() -> np.ndarray:
    """The first N_DIGITS test digits of the embedded data set, float32 [N, 1, 28, 28]."""
    images = mnist_digits(N_DIGITS, split="test")
    assert images is not None, f"{EMBEDDED_DIGITS} missing"
    return images


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                out += [int(k) for k in kids]
                todo += [int(k) for k in kids]
    return out


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def snapshot(rootfs: Path) -> dict[str, tuple]:
    """{path: (mode, size, mtime_ns, uid, gid)} of every file outside /tmp, /proc, /sys, /dev."""
    skip = {rootfs / d for d in ("tmp", "proc", "sys", "dev", "run", "models")}
    files: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for name in dirnames + filenames:
            p = here / name
            st = p.lstat()
            size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
            files[str(p.relative_to(rootfs))] = (st.st_mode, size, st.st_mtime_ns, st.st_uid, st.st_gid)
    return files


# ------------------------------------------------------------------------- fixtures
@dataclass
class Image:
    tag: str
    build_s: float
    size: str
    config: dict
    history: list = field(default_factory=list)


@dataclass
class Running:
    """The image's working container and, once started (``server``), the service in it."""

    name: str
    rootfs: Path
    port: int
    log: Path
    server: Server | None = None
    pid: int | None = None
    ready_s: float | None = None
    health_before: int | None = None
    files_before: dict = field(default_factory=dict)
    inputs_sent: int = 0

    @property
    def proc(self) -> subprocess.Popen | None:
        """`buildah run`, the service's parent."""
        return self.server.proc if self.server is not None else None

    def stopped(self) -> bool:
        return self.proc is None or self.proc.poll() is not None


@pytest.fixture(scope="module")
def report(request):
    lines: list[str] = []
    yield lines
    # Printed past pytest's capture, so `make test` (pytest -q) shows the figures too.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        for line in lines:
            print(f"\nimage test: {line}", end="", flush=True)
        print(flush=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory, report) -> Image:
    require_buildah()
    if not shipped_model_available():
        pytest.fail(f"shipped model {SHIPPED_VERSION_DIR} missing", pytrace=False)
    log = tmp_path_factory.mktemp("image-build") / "build.log"
    failure = None
    try:
        build_s = build_image(TAG, log)
    except BuildError as exc:
        failure = str(exc)
    if failure:  # outside the except: the build's own output, once
        pytest.fail(failure, pytrace=False)
    info = json.loads(buildah("inspect", "--type", "image", TAG).stdout)
    size = buildah("images", "--format", "{{.Size}}", TAG).stdout.strip()
    args = " ".join(f"{k}={v}" for k, v in BUILD_ARGS.items())
    report.append(f"built {TAG} ({args}) in {build_s:.0f} s, size {size}")
    return Image(TAG, build_s, size, info["Docker"]["config"])


@pytest.fixture(scope="module")
def container(image, tmp_path_factory):
    name = f"awnet-image-test-{os.getpid()}"
    buildah("rm", name, check=False)
    buildah("from", "--pull-never", "--name", name, image.tag)
    rootfs = Path(buildah("mount", name).stdout.strip())
    log = tmp_path_factory.mktemp("image-run") / "service.log"
    running = Running(name, rootfs, free_port(), log)
    try:
        yield running
    finally:
        stop(running, force=True)
        buildah("umount", name, check=False)
        buildah("rm", name, check=False)


def run_args(image: Image, running: Running, env: dict[str, str]) -> list[str]:
    """`buildah run` as docker-compose.yml runs the service, as far as buildah allows."""
    args = [*ENGINE, "run", "--isolation", "chroot",
            "--user", image.config["User"], "--cap-drop", "ALL",
            "--mount", "type=tmpfs,destination=/tmp",
            "--volume", f"{SHIPPED_REPOSITORY}:/models:ro"]
    for k, v in env.items():
        assert k.startswith("AWNET_")
        args += ["--env", f"{k}={v}"]
    return [*args, running.name, "--"]


def healthcheck(image: Image, running: Running) -> int:
    """The image's own HEALTHCHECK command, run inside the container; its exit code."""
    test = image.config["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    cmd = run_args(image, running, {"AWNET_PORT": str(running.port)}) + test[1:]
    return run(cmd, timeout=60, check=False).returncode


def stop(running: Running, force: bool = False) -> None:
    """SIGTERM the service (SIGKILL with force); never leaves a process of the run behind."""
    if running.stopped():
        return
    if running.pid is not None and not force:
        with contextlib.suppress(ProcessLookupError):
            os.kill(running.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            running.proc.wait(timeout=SHUTDOWN_DELAY_S + SHUTDOWN_TIMEOUT_S + 15)
    if running.proc.poll() is None:
        # buildah does not pass signals on, and its chroot runtime outlives it: kill the
        # whole tree of this run, the deepest processes first.
        for pid in reversed(descendants(running.proc.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        running.proc.kill()
        running.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(image, container, report):
    """The service started in the container (its own CMD), once ready."""
    running = container
    running.health_before = healthcheck(image, running)  # nothing listens yet
    running.files_before = snapshot(running.rootfs)

    def in_container(settings: dict[str, str]) -> list[str]:
        return run_args(image, running, settings) + image.config["Cmd"]

    start = time.monotonic()
    with start_process(None, SETTINGS, log_path=running.log, timeout=READY_LIMIT_S + 30,
                       port=running.port, command=in_container) as server:
        running.server = server
        try:
            running.ready_s = time.monotonic() - start
            report.append(f"start to ready {running.ready_s:.2f} s (buildah run of the image's CMD "
                          f"{' '.join(image.config['Cmd'])} to /v2/health/ready 200)")
            # The service's own process (what docker's SIGTERM reaches), below buildah's chroot runtime.
            cmd = image.config["Cmd"]
            for pid in descendants(running.proc.pid):
                argv = cmdline(pid)  # buildah runs the command with argv[0] resolved on the image's PATH
                if argv[1:] == cmd[1:] and os.path.basename(argv[0] if argv else "") == os.path.basename(cmd[0]):
                    running.pid = pid
            assert running.pid is not None, f"no process {cmd} under buildah run: " + repr(
                [cmdline(p) for p in descendants(running.proc.pid)])
            yield running
        finally:
            stop(running, force=True)  # the whole tree of the run, before start_process's SIGTERM


@pytest.fixture(scope="module")
def local_service(tmp_path_factory):
    """The same model served from this checkout (`python -m service`), same settings."""
    log = tmp_path_factory.mktemp("local-service") / "service.log"
    with start_process(SHIPPED_REPOSITORY, SETTINGS, log_path=log, timeout=120) as server:
        yield server


# --------------------------------------------------------------------------- tests
def test_image_holds_the_service_only(image, container):
    """No torch, no compiler, no tests, no training/ in the image; runs as a non-root user."""
    root = container.rootfs
    assert image.config["User"].split(":")[0] not in {"", "0", "root"}, image.config["User"]
    site = list(root.glob("opt/venv/lib/python3*/site-packages"))
    assert len(site) == 1, site
    site = site[0]
    assert (site / "service" / "__main__.py").is_file()
    assert (site / "onnxruntime").is_dir()
    for name in ("torch", "torchvision", "torchattacks", "training", "models", "tests"):
        assert not (site / name).exists(), f"{name} in the image's site-packages"
    assert not (root / "src").exists(), "the build stage's /src is in the runtime image"
    for d in ("usr/bin", "usr/local/bin", "opt/venv/bin"):
        for cc in ("gcc", "cc", "g++", "c++", "clang", "x86_64-linux-gnu-gcc-12"):
            assert not (root / d / cc).exists(), f"compiler /{d}/{cc} in the image"
    ours = {p.name for p in (ROOT / "tests" / "deploy").glob("test_*.py")}
    found = [str(p) for p in root.rglob("test_*.py") if p.name in ours]
    assert not found, f"project tests in the image: {found}"
    assert not list(root.rglob("training/__main__.py")), "training/ in the image"
    dists = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    if BUILD_ARGS["ONNXRUNTIME"] == "cpu":
        assert "onnxruntime" in dists and "onnxruntime_gpu" not in dists, dists
    assert not any(d.startswith("nvidia") for d in dists), "CUDA wheels in the CPU image"


def test_ready_within_limit_and_healthcheck(image, served):
    assert served.health_before not in (None, 0), "HEALTHCHECK passed before the service started"
    assert served.ready_s <= READY_LIMIT_S, f"start to ready took {served.ready_s:.1f} s"
    assert healthcheck(image, served) == 0, "HEALTHCHECK fails on a ready service"


def test_same_answers_as_the_local_service(served, local_service):
    pytest.importorskip("tritonclient.http")
    import tritonclient.http as httpclient

    images = digits()
    answers = {}
    for where, server in (("image", served.server), ("local", local_service)):
        client = httpclient.InferenceServerClient(server.target)
        try:
            meta = client.get_model_metadata(SHIPPED_MODEL, SHIPPED_VERSION)
            inp = httpclient.InferInput("image", list(images.shape), "FP32")
            inp.set_data_from_numpy(images, binary_data=True)
            result = client.infer(SHIPPED_MODEL, [inp], model_version=SHIPPED_VERSION)
            outputs = {o["name"]: result.as_numpy(o["name"]) for o in meta["outputs"]}
        finally:
            client.close()
        classify = []
        for img in images:
            r = request(server.url, "POST", f"/v1/models/{SHIPPED_MODEL}/classify",
                        json={"pixels": img[0].tolist(), "top_k": 3})
            assert r.status_code == 200, r.text
            classify.append(r.json())
        answers[where] = (meta, outputs, classify)
    served.inputs_sent += 2 * N_DIGITS
    (meta_i, out_i, cls_i), (meta_l, out_l, cls_l) = answers["image"], answers["local"]
    assert meta_i == meta_l
    assert out_i.keys() == out_l.keys() and "p_adv" in out_i
    for name in out_i:
        np.testing.assert_array_equal(out_i[name], out_l[name], err_msg=f"v2 output {name}")
    assert cls_i == cls_l
    assert {c["class_index"] for c in cls_i} <= set(range(10))


def test_metrics_carry_the_router_histogram(served):
    images = digits()
    r = request(served.server.url, "POST", f"/v1/models/{SHIPPED_MODEL}/classify",
                json={"pixels": images[0][0].tolist()})
    assert r.status_code == 200, r.text
    served.inputs_sent += 1
    exposed = families(served.server.url)  # asserts /metrics answers 200
    assert "awnet_router_score" in exposed, sorted(exposed)
    hist = exposed["awnet_router_score"]
    assert hist.type == "histogram"
    count = sum(s.value for s in hist.samples if s.name == "awnet_router_score_count")
    assert count >= served.inputs_sent, (count, served.inputs_sent)
    buckets = [s for s in hist.samples if s.name == "awnet_router_score_bucket"]
    assert any(s.labels.get("le") == "+Inf" and s.value == count for s in buckets)


def test_sigterm_under_load_answers_accepted_requests_and_exits_zero(served, report):
    # Raw http.client, one connection a request: refused and reset connections are told apart.
    payload = json.dumps({"inputs": [json_tensor("image", digits()[:1])]})
    path = infer_path(SHIPPED_MODEL, SHIPPED_VERSION)
    results: list[tuple[float, float, str]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 60

    def worker():
        for _ in range(400):  # bounded: at most 400 requests a worker, 60 s
            if time.monotonic() > stop_at:
                return
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
            try:
                conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                outcome = str(resp.status)
            except ConnectionRefusedError:
                outcome = "refused"
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                outcome = "reset"
            except Exception as exc:  # noqa: BLE001 (recorded and asserted on)
                outcome = f"error {type(exc).__name__}: {exc}"
            finally:
                conn.close()
            with lock:
                results.append((t0, time.monotonic(), outcome))
            if outcome in ("refused", "reset"):
                return

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t_term = time.monotonic()
    os.kill(served.pid, signal.SIGTERM)
    code = served.proc.wait(timeout=SHUTDOWN_DELAY_S + SHUTDOWN_TIMEOUT_S + 15)
    t_exit = time.monotonic() - t_term
    for t in threads:
        t.join(timeout=60)
    assert code == 0, f"exit status {code}:\n{log_tail(served.log)}"
    assert t_exit <= SHUTDOWN_DELAY_S + SHUTDOWN_TIMEOUT_S, f"exit after {t_exit:.1f} s"
    outcomes = [o for _, _, o in results]
    assert not [o for o in outcomes if o not in {"200", "refused", "reset"}], outcomes
    before = [o for t0, _, o in results if t0 < t_term]
    during = [o for t0, _, o in results if t_term <= t0 < t_term + 0.8 * SHUTDOWN_DELAY_S]
    assert before and all(o == "200" for o in before), before
    assert during and all(o == "200" for o in during), (
        f"requests sent during the shutdown delay must be answered: {during}")
    report.append(f"SIGTERM under load: {outcomes.count('200')} requests answered 200, "
                  f"{len(outcomes) - outcomes.count('200')} refused after close, exit 0 after {t_exit:.2f} s")


def test_service_writes_nothing_outside_tmp(served):
    stop(served)
    after = snapshot(served.rootfs)
    before = served.files_before
    assert before, "no snapshot before the start"
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (added or removed or changed), f"added {added[:20]}, removed {removed[:20]}, changed {changed[:20]}"


def test_a_broken_dockerfile_fails_with_the_build_error(image, tmp_path):
    """A COPY of a missing file: the build's own error, at once (not a timeout)."""
    text = SERVE_DOCKERFILE.read_text()
    original = "COPY pyproject.toml README.md ./"
    assert original in text
    broken = tmp_path / "serve.Dockerfile"
    broken.write_text(text.replace(original, "COPY pyproject.toml README.md no-such-file ./"))
    start = time.monotonic()
    with pytest.raises(BuildError) as err:
        build_image("localhost/awnet-serve:broken-test", tmp_path / "build.log", dockerfile=broken,
                    timeout=600)
    assert "no-such-file" in str(err.value), str(err.value)
    assert time.monotonic() - start < 300


# ------------------------------------------------------------------ training image
def cpu_torch_source() -> str | None:
    """Where a build can take the CPU torch from: a wheel folder of this machine's pip, or an index."""
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}"
    links = os.environ.get("PIP_FIND_LINKS", "")
    if links and list(Path(links).glob("torch-*+cpu-*.whl")):
        return f"PIP_FIND_LINKS={links}"
    return None


def test_training_image_on_cpu_torch_trains_and_exports(tmp_path, report):
    """docker/train.Dockerfile on a CPU torch base (train-cpu): one tiny train and export in it."""
    require_buildah()
    source = cpu_torch_source()
    if source is None:
        pytest.skip("no CPU torch wheel to build with (PIP_FIND_LINKS folder or PIP_INDEX_URL): "
                    "PyPI's torch is the CUDA build, several GB")
    tag = "localhost/awnet-train:image-test"
    env = {**os.environ, "AWNET_IMAGE_ENGINE": "buildah", "IMAGE": tag,
           "TORCH_CPU_IMAGE": "localhost/awnet-torch-cpu:image-test"}
    log = tmp_path / "build.log"
    start = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(["bash", str(IMAGE_BUILD_SCRIPT), "train-cpu"], stdout=out,
                              stderr=subprocess.STDOUT, env=env, cwd=ROOT, timeout=BUILD_TIMEOUT_S)
    build_s = time.monotonic() - start
    assert proc.returncode == 0, f"training image build failed:\n{log_tail(log, 40)}"
    config = json.loads(buildah("inspect", "--type", "image", tag).stdout)["Docker"]["config"]
    assert config["Entrypoint"] == ["python", "-m", "training"]
    assert config["User"].split(":")[0] not in {"", "0", "root"}
    size = buildah("images", "--format", "{{.Size}}", tag).stdout.strip()

    # Not the image's VOLUME paths: buildah run keeps its own volumes there, over a --volume.
    work = tmp_path / "work"
    work.mkdir()
    uid, _, gid = config["User"].partition(":")
    os.chown(work, int(uid), int(gid or uid))
    name = f"awnet-train-test-{os.getpid()}"
    buildah("rm", name, check=False)
    buildah("from", "--pull-never", "--name", name, tag)
    try:
        base = [*ENGINE, "run", "--isolation", "chroot",
                "--user", config["User"], "--cap-drop", "ALL", "--mount", "type=tmpfs,destination=/tmp",
                "--volume", f"{work}:/workspace/out", "--env", "OMP_NUM_THREADS=1", name, "--",
                *config["Entrypoint"]]
        train = ["train", "--method", "awnet", "--teacher-free", "--epochs", "1",
                 "--max-train-samples", "256", "--batch-size", "32", "--attack-steps", "2",
                 "--eval-attack-steps", "2", "--val-max-samples", "64", "--val-attack-steps", "5",
                 "--val-apgdt-steps", "3", "--device", "cpu",
                 "--out", "/workspace/out/runs/tiny"]
        export = ["export", "--checkpoint", "/workspace/out/runs/tiny/last.pt",
                  "--out", "/workspace/out/repository/tiny/1", "--eval-steps", "2",
                  "--eval-max-samples", "64"]
        start = time.monotonic()
        for args in (train, export):
            proc = subprocess.run(base + args, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"{args[0]} in the image failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        run_s = time.monotonic() - start
    finally:
        buildah("rm", name, check=False)
        # 2.8 GB in vfs, rebuilt by every run anyway
        buildah("rmi", tag, env["TORCH_CPU_IMAGE"], check=False)
    version = work / "repository" / "tiny" / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    assert (version / "model.onnx").stat().st_size > 0
    assert manifest["name"] == "tiny" and manifest["version"] == "1"
    report.append(f"training image (CPU torch) built in {build_s:.0f} s, size {size}; "
                  f"tiny train + export in it {run_s:.0f} s")
