"""The Dockerfiles (hadolint, one source of truth for dependencies), .dockerignore, health check."""

from __future__ import annotations

import fnmatch
import http.server
import os
import re
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.paths import DOCKER, INSTALL_SCRIPT, ROOT
from tests.support.processes import run, tool

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SERVE = DOCKER / "serve.Dockerfile"
TRAIN = DOCKER / "train.Dockerfile"
TORCH_CPU = DOCKER / "torch-cpu.Dockerfile"  # the training image's CPU base (build_image.sh train-cpu)
HEALTHCHECK = DOCKER / "healthcheck.py"


def instructions(path: Path) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append((keyword.upper(), args.strip()))
        buf = ""
    return out


def base_images(path: Path) -> list[str]:
    """Each FROM's image, with the ARG defaults declared before the first FROM substituted."""
    args: dict[str, str] = {}
    froms = []
    for keyword, rest in instructions(path):
        if keyword == "ARG" and not froms and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif keyword == "FROM":
            image = rest.split()[0]
            froms.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image))
    return froms


def pip_requirements(path: Path) -> list[str]:
    """Everything the Dockerfile's RUN lines hand to `pip install` (positional arguments).

    A `"$@"` argument stands for the arguments of a preceding `set -- ...` in the same RUN.
    """
    reqs = []
    for keyword, args in instructions(path):
        if keyword != "RUN":
            continue
        set_args: list[str] = []
        lexer = shlex.shlex(args, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for token in lexer:
            if token in {"&&", ";", "||", "|", "&", "then", "else", "fi", "do", "done"}:
                commands.append([])
            else:
                commands[-1].append(token)
        for words in commands:
            if words[:2] == ["set", "--"]:
                set_args += words[2:]
            if "pip" in words and "install" in words:
                after = words[words.index("install") + 1:]
                for w in after:
                    if w == "$@":
                        reqs += set_args
                    elif not w.startswith("-"):
                        reqs.append(w)
    return reqs


def extras() -> dict[str, list[Requirement]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: [Requirement(r) for r in reqs]
            for name, reqs in data["project"]["optional-dependencies"].items()}


@pytest.mark.parametrize("dockerfile", [SERVE, TRAIN, TORCH_CPU], ids=["serve", "train", "torch-cpu"])
def test_hadolint(dockerfile):
    proc = run([tool("hadolint"), "--config", str(DOCKER / ".hadolint.yaml"), "--no-color",
                str(dockerfile)], check=False)
    assert proc.returncode == 0, f"hadolint {dockerfile.name}:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize(("dockerfile", "extra"), [(SERVE, "serve"), (TRAIN, "train")],
                         ids=["serve", "train"])
def test_images_install_exactly_the_pyproject_extra(dockerfile, extra):
    """One source of truth: the image installs `.[<extra>]` and nothing the extra doesn't name."""
    no_deps = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["awnet-serve"]["no-deps"])
    reqs = [r for r in pip_requirements(dockerfile) if r not in no_deps]  # pinned in pyproject.toml too
    project = [r for r in reqs if r.startswith(".")]
    assert project == [f".[{extra}]"], f"{dockerfile.name} must pip install '.[{extra}]' once: {reqs}"
    allowed = {canonicalize_name(r.name) for r in extras()[extra]}
    for r in reqs:
        if r.startswith("."):
            continue
        if "onnxruntime-gpu" in allowed and r == "onnxruntime==$v":
            # ONNXRUNTIME=cpu: ONNX Runtime's CPU package in place of the GPU one, at the
            # version the extra resolved ($v, read from the installed onnxruntime-gpu)
            continue
        req = Requirement(r)
        # only optional extras of a distribution the extra already names, at the version
        # that extra resolves (no specifier of its own)
        assert canonicalize_name(req.name) in allowed, f"{dockerfile.name} installs {r}, not in [{extra}]"
        assert not req.specifier, f"{dockerfile.name}: {r} pins a version outside pyproject.toml"


def test_serving_image_has_no_torch():
    names = {canonicalize_name(r.name) for r in extras()["serve"]}
    assert "torch" not in names
    assert not any("torch" in r for r in pip_requirements(SERVE))


def test_serving_image_shape():
    ins = instructions(SERVE)
    froms = base_images(SERVE)
    assert len(froms) >= 2, "multi-stage build (build stage + runtime)"
    assert all(re.match(r"python:3\.11(\.\d+)?-slim", f) for f in froms), froms
    # one base for both stages, a build argument (a local equivalent where Docker Hub can't be pulled)
    assert [a.split()[0] for k, a in ins if k == "FROM"] == ["${BASE_IMAGE}"] * len(froms)
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "must run as a non-root user"
    env = " ".join(a for k, a in ins if k == "ENV")
    assert "AWNET_HOST=0.0.0.0" in env and "AWNET_MODEL_REPOSITORY=/models" in env
    assert ("EXPOSE", "8000") in ins
    health = [a for k, a in ins if k == "HEALTHCHECK"]
    assert len(health) == 1 and "awnet-healthcheck" in health[0]
    assert ("COPY", "docker/healthcheck.py /usr/local/bin/awnet-healthcheck") in ins
    cmd = [a for k, a in ins if k in {"CMD", "ENTRYPOINT"}]
    assert cmd[-1] == '["python", "-m", "service"]'


def test_training_image_shape():
    ins = instructions(TRAIN)
    froms = base_images(TRAIN)
    assert re.match(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-(runtime|devel)$", froms[-1]), froms
    assert [a for k, a in ins if k == "FROM"] == ["${BASE_IMAGE}"], "the base is a build argument"
    assert [a for k, a in ins if k == "ENTRYPOINT"] == ['["python", "-m", "training"]']
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def dockerignore_patterns() -> list[tuple[bool, str]]:
    pats = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            neg = line.startswith("!")
            pats.append((neg, line.lstrip("!").strip("/")))
    return pats


def ignored(path: str) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; a folder match covers its files."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for neg, pat in dockerignore_patterns():
        regex = fnmatch.translate(pat.replace("**/", "")) if pat.startswith("**/") else None
        for p in prefixes:
            hit = fnmatch.fnmatch(p, pat) or (regex and re.match(regex, p.split("/")[-1]))
            if hit:
                result = not neg
    return result


def test_dockerignore_keeps_contexts_small_but_complete():
    for path in [".git", ".venv", "models/repository", "models/repository/awnet-mnist/3/model.onnx",
                 "runs", "tests", "service/__pycache__/app.cpython-311.pyc", "docs"]:
        assert ignored(path), f"{path} should be excluded from the build context"
    for dockerfile in (SERVE, TRAIN):
        for keyword, args in instructions(dockerfile):
            if keyword == "COPY" and "--from=" not in args:
                for src in shlex.split(args)[:-1]:
                    assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src}: no such file"
                    assert not ignored(src), f"{dockerfile.name}: COPY {src} is in .dockerignore"
    for needed in ["training/data/embedded/mnist5k.npz", "service/app.py", "models/awnet.py"]:
        assert not ignored(needed)


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server API)
        self.send_response(type(self).status if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


def run_healthcheck(port: int) -> int:
    env = {**os.environ, "AWNET_PORT": str(port)}
    env.pop("AWNET_HEALTHCHECK_URL", None)
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env=env, capture_output=True,
                          timeout=30).returncode


def test_healthcheck_script_reports_readiness():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        _Handler.status = 200
        assert run_healthcheck(port) == 0
        _Handler.status = 503
        assert run_healthcheck(port) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert run_healthcheck(port) == 1  # nothing listening


def test_healthcheck_script_against_the_live_service(live_service):
    assert run_healthcheck(live_service.port) == 0


def test_install_script():
    run(["bash", "-n", str(INSTALL_SCRIPT)])
    text = INSTALL_SCRIPT.read_text()
    assert "apt-get install" in text and "prometheus" in text and "docker-compose" in text
    if all(tool_present(t) for t in ("promtool", "prometheus", "docker-compose")):
        out = run(["bash", str(INSTALL_SCRIPT)])  # idempotent: nothing to do
        assert "already installed" in out.stdout


def tool_present(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def test_cpu_torch_base_pins_the_makefiles_torch():
    """docker/torch-cpu.Dockerfile installs the CPU torch pin `make setup` installs (TORCH_SPEC)."""
    make = re.search(r"^TORCH_SPEC \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    arg = [a for k, a in instructions(TORCH_CPU) if k == "ARG" and a.startswith("TORCH_SPEC=")]
    assert make and arg == [f"TORCH_SPEC={make.group(1)}"], (make, arg)
    assert [a.split()[0] for k, a in instructions(TORCH_CPU) if k == "FROM"] == ["${BASE_IMAGE}"]
