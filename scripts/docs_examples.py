#!/usr/bin/env python3
"""Every example output of README.md and docs/*.md, produced against the shipped models.

    .venv/bin/python scripts/docs_examples.py            # rewrite the blocks and docs/examples/
    .venv/bin/python scripts/docs_examples.py --check    # exit 1, with a diff, when one is stale
    .venv/bin/python scripts/docs_examples.py --check --repository /tmp/copy   # another repository

It starts the real server (``python -m service``, the command ``make serve`` runs) on the
model repository (``--repository``, default ``models/repository``) on a free local port,
runs each example's curl commands as a shell would (from a temporary folder holding the
example inputs under ``docs/examples/``, so the paths are the ones a reader types from the
project root) and writes each command with its real answer between the markers

    <!-- example:NAME:begin (scripts/docs_examples.py writes this block; do not edit) -->
    <!-- example:NAME:end -->

wherever they appear in README.md and docs/*.md. Besides the curl examples, two blocks come
from files rather than from the server: ``classify-fields`` (the README's classify answer,
field by field) and ``shipped-models`` (one sentence per served version, from its evaluation
card ``evaluation.json``, or the manifest's ``evaluation.robustness``).

The server runs with the defaults of ``make serve`` except ``AWNET_PROVIDERS=cpu`` (the same
answers on every machine) and quiet logs. The examples use the repository's first model
(``awnet-mnist`` when present) and its highest ready version, so a new version changes the
commands and the answers: ``--check`` then fails (tests/docs/test_docs_examples.py runs it in
``make test``) until this script is run again. ``--check`` compares after masking what
changes from run to run (timestamps, durations, request ids) and compares numbers with a
relative tolerance of 1e-3 (ONNX Runtime's float results differ in their last digits between
CPUs); any other difference is a stale block.

Inputs (written to docs/examples/, checked by ``--check`` too): ``digit.png``, the first
digit of the embedded test split (training/data/embedded/mnist5k.npz), as PNG, as a v1 pixel
array (``pixels.json``), as a v2 JSON request (``infer.json``) and as a v2 binary request
(``infer.bin``); ``adversarial.json``, the first adversarial image of the example version's
probe set (``probes.npz``) that its router flags. Needs curl and base64 on PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES_DIR = "docs/examples"  # relative to the project root, as the commands name it
DIGITS = ROOT / "training" / "data" / "embedded" / "mnist5k.npz"
SHOWN_BASE = "http://127.0.0.1:8000"  # what `make serve` listens on, and what the docs show

BLOCK = re.compile(
    r"(?P<begin><!-- example:(?P<name>[a-z0-9-]+):begin[^>]*-->\n)(?P<body>.*?)(?P<end><!-- example:(?P=name):end -->)",
    re.DOTALL,
)
BEGIN = "<!-- example:{name}:begin (scripts/docs_examples.py writes this block; do not edit) -->\n"

# ---- masking and comparison ------------------------------------------------------------------

#: JSON keys whose values change from run to run (or from machine to machine).
VOLATILE_KEYS = re.compile(r'"((?:[a-z0-9_]*_)?(?:at|timestamp|seconds|duration|ms|request_id|uptime))":\s*("[^"]*"|-?[0-9.eE+-]+)')
VOLATILE_METRIC = re.compile(r"^(awnet_[a-z_]*(?:timestamp|seconds|duration|parity_error)[a-z_]*(?:\{[^}]*\})?) \S+$", re.MULTILINE)
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?")
REQUEST_ID = re.compile(r"^(x-request-id:) .*$", re.IGNORECASE | re.MULTILINE)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
REL_TOL, ABS_TOL = 1e-3, 1e-7


def mask(text: str) -> str:
    """``text`` with what varies between runs replaced by ``<masked>``."""
    text = VOLATILE_KEYS.sub(lambda m: f'"{m.group(1)}": "<masked>"', text)
    text = VOLATILE_METRIC.sub(lambda m: f"{m.group(1)} <masked>", text)
    text = REQUEST_ID.sub(lambda m: f"{m.group(1)} <masked>", text)
    return TIMESTAMP.sub("<masked>", text)


def _numbers_close(a: str, b: str) -> bool:
    if a == b:
        return True
    if not any(c in a + b for c in ".eE"):  # integers: counts, sizes, versions, lengths
        return False
    x, y = float(a), float(b)
    return math.isclose(x, y, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def same(committed: str, live: str) -> bool:
    """True when two renderings of a block say the same, masked and within the tolerance."""
    a, b = mask(committed), mask(live)
    if NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return False
    return all(_numbers_close(x, y) for x, y in zip(NUMBER.findall(a), NUMBER.findall(b), strict=True))


# ---- the answers as shown --------------------------------------------------------------------


def pretty(obj: Any, indent: int = 0, width: int = 92, lead: int = 0) -> str:
    """JSON indented by 2, with every object or list that fits its line on one line
    (``lead``: what precedes the value on its line, e.g. its key)."""
    flat = json.dumps(obj, ensure_ascii=False)
    if not isinstance(obj, (dict, list)) or not obj or indent + lead + len(flat) <= width:
        return flat
    pad = " " * (indent + 2)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k)}: {pretty(v, indent + 2, width, len(json.dumps(k)) + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return "[\n" + ",\n".join(pad + pretty(v, indent + 2, width) for v in obj) + "\n" + " " * indent + "]"


def as_json(shown: Callable[[Any], Any] | None = None) -> Callable[[str], str]:
    def fmt(out: str) -> str:
        try:
            obj = json.loads(out)
        except ValueError:
            return out.rstrip("\n")
        return pretty(shown(obj) if shown else obj)

    return fmt


def as_text(out: str) -> str:
    return out.replace("\r", "").rstrip("\n")


def elide_manifests(obj: Any) -> Any:
    """/v1/models with each manifest cut to its top-level scalars (the rest is manifest.json)."""
    for m in obj.get("models", []):
        man = m.get("manifest")
        if isinstance(man, dict):
            kept = {k: v for k, v in man.items() if not isinstance(v, (dict, list))}
            kept["..."] = f"{len(man) - len(kept)} more keys, nested: the version's manifest.json"
            m["manifest"] = kept
    return obj


# ---- the examples ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    template: str  # the shell command as shown, with {base}, {model}, {version} and the like
    fmt: Callable[[str], str] = as_text
    quiet: bool = False  # shown without output (it prints none)
    real: str | None = None  # what runs, when it differs from what is shown (``{python}``: this Python)
    in_project: bool = False  # run from the project root (else from the folder of example inputs)


@dataclass(frozen=True)
class Example:
    name: str
    commands: tuple[Command, ...]


def curl(name: str, template: str, fmt: Callable[[str], str] | None = None) -> Example:
    return Example(name, (Command(template, fmt or as_json()),))


EX = EXAMPLES_DIR
JSON_POST = "curl -s -H 'Content-Type: application/json'"
#: In the order they run (the metrics example counts the requests before it).
EXAMPLES: tuple[Example, ...] = (
    curl("server-metadata", "curl -s {base}/v2"),
    Example("health", (Command("curl -s {base}/v2/health/live", as_json()),
                       Command("curl -s {base}/v2/health/ready", as_json()))),  # fmt: skip
    curl("models-list", "curl -s {base}/v1/models", as_json(elide_manifests)),
    curl("classify", "curl -s -F file=@" + EX + "/digit.png {base}/v1/models/{model}/classify"),
    curl("classify-raw-robust", "curl -s -H 'Content-Type: image/png' --data-binary @" + EX
         + "/digit.png '{base}/v1/models/{model}/classify?mode=robust&top_k=3'"),  # fmt: skip
    curl("classify-b64-clean", JSON_POST + " -d '{{\"image_b64\": \"'$(base64 -w0 " + EX
         + "/digit.png)'\", \"mode\": \"clean\", \"top_k\": 3}}' {base}/v1/models/{model}/classify"),  # fmt: skip
    curl("classify-pixels", JSON_POST + " -d @" + EX + "/pixels.json {base}/v1/models/{model}/versions/{version}/classify"),
    curl("classify-adversarial", JSON_POST + " -d @" + EX + "/adversarial.json {base}/v1/models/{model}/classify"),
    curl("model-metadata", "curl -s {base}/v2/models/{model}"),
    curl("model-config", "curl -s {base}/v2/models/{model}/versions/{version}/config"),
    Example("model-ready", (Command("curl -s {base}/v2/models/{model}/ready", as_json()),
                            Command("curl -s {base}/v2/models/{model}/versions/{version}/ready", as_json()))),  # fmt: skip
    curl("infer-json", JSON_POST + " -d @" + EX + "/infer.json {base}/v2/models/{model}/infer"),
    Example("infer-binary", (
        Command("curl -s -D headers.txt -o answer.bin -H 'Inference-Header-Content-Length: {request_header}' "
                "-H 'Content-Type: application/octet-stream' --data-binary @" + EX + "/infer.bin "
                "{base}/v2/models/{model}/infer", quiet=True),
        Command("grep -i -E '^(content-type|inference-header-content-length):' headers.txt"),
        Command("head -c {answer_header} answer.bin; echo   # the JSON header; {answer_binary} bytes of "
                "binary tensors follow it"),
    )),  # fmt: skip
    curl("repository-index", "curl -s -X POST {base}/v2/repository/index"),
    curl("load-outside-explicit", "curl -s -X POST {base}/v2/repository/models/{model}/load"),
    curl("error-shape", JSON_POST + " -d '{{\"inputs\": [{{\"name\": \"image\", \"datatype\": \"FP32\", "
         "\"shape\": [1, 3], \"data\": [0, 0, 0]}}]}}' {base}/v2/models/{model}/infer"),  # fmt: skip
    Example("settings-error", (Command(
        "AWNET_PORT=http python -m service; echo \"exit status $?\"",
        real="AWNET_PORT=http {python} -m service 2>&1; echo \"exit status $?\"", in_project=True),)),  # fmt: skip
    Example("metrics", (Command(
        "curl -s {base}/metrics | grep -E '^awnet_(inputs_total|batch_size_count|model_ready|model_info|"
        "model_evaluated_accuracy|router_evaluated_ratio)'"),)),  # fmt: skip
)
FILE_BLOCKS = ("classify-fields", "shipped-models")


# ---- inputs ----------------------------------------------------------------------------------


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def make_inputs(model_dir: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """{file name: bytes} of docs/examples/ and what the text says about them."""
    digits = np.load(DIGITS)
    index = int(digits["test_idx"][0])
    image, label = digits["images"][index], str(digits["class_names"][digits["labels"][index]])
    px = np.round(image.astype(np.float32) / 255.0, 4)
    flat = [float(v) for v in px.ravel()]
    files = {
        "digit.png": _png(image),
        "pixels.json": json.dumps({"pixels": [[float(v) for v in row] for row in px], "top_k": 3}).encode() + b"\n",
        "infer.json": json.dumps({
            "id": "docs-1",
            "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": flat}],
            "outputs": [{"name": "probabilities", "parameters": {"classification": 3}},
                        {"name": "p_adv"}, {"name": "mix"}, {"name": "adversarial"}],
        }).encode() + b"\n",  # fmt: skip
    }
    blob = px.astype("<f4").tobytes()
    head = json.dumps({
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28], "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": True}}, {"name": "p_adv", "parameters": {"binary_data": True}}],
    }).encode()  # fmt: skip
    files["infer.bin"] = head + blob
    facts: dict[str, Any] = {"digit_label": label, "digit_index": index, "request_header": len(head)}

    manifest = json.loads((model_dir / "manifest.json").read_text())
    threshold = (manifest.get("router") or {}).get("threshold")
    probes_file = (manifest.get("probes") or {}).get("file")
    if threshold is not None and probes_file and (model_dir / probes_file).is_file():
        probes = np.load(model_dir / probes_file)
        flagged = np.flatnonzero(probes["adv_p_adv"] >= threshold)
        if len(flagged):
            i = int(flagged[0])
            adv = np.round(probes["adv_images"][i, 0].astype(np.float64), 4)
            files["adversarial.json"] = json.dumps({"pixels": adv.tolist(), "top_k": 3}).encode() + b"\n"
            facts["adversarial_index"], facts["adversarial_label"] = i, str(manifest["class_names"][probes["adv_labels"][i]])
            facts["adversarial_attack"] = (manifest["probes"].get("adversarial") or {}).get("attack", "an attack")
    return files, facts


def same_input(name: str, a: bytes, b: bytes) -> bool:
    if name.endswith(".png"):  # compare the pixels: zlib builds may compress differently
        return np.array_equal(np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b))))
    return a == b


# ---- the server ------------------------------------------------------------------------------


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextlib.contextmanager
def serving(repository: Path, timeout: float = 300.0) -> Iterator[str]:
    """``python -m service`` on ``repository``, on a free port, until the block ends."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWNET_")}
    env.update(AWNET_MODEL_REPOSITORY=str(repository), AWNET_HOST="127.0.0.1", AWNET_PORT=str(port),
               AWNET_PROVIDERS="cpu", AWNET_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")  # fmt: skip
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"python -m service exited with {proc.returncode}:\n{log.read().decode(errors='replace')}")
                with contextlib.suppress(OSError):
                    if _get(url + "/v2/health/ready", timeout=2.0)[0] == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"python -m service on {repository} not ready within {timeout:.0f} s")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def example_model(url: str) -> tuple[str, str]:
    """(name, highest ready version) of awnet-mnist, else of the first model served."""
    models = json.loads(_get(url + "/v1/models")[1])["models"]
    ready = [m for m in models if m["state"] == "READY"]
    names = sorted({m["name"] for m in ready})
    name = "awnet-mnist" if "awnet-mnist" in names else names[0]
    return name, max((m["version"] for m in ready if m["name"] == name), key=int)


def run_examples(url: str, work: Path, values: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """({example name: its Markdown block body}, {example name: its last command's raw output}),
    each command run by bash in ``work``."""
    out: dict[str, str] = {}
    raw: dict[str, str] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWNET_")}
    for ex in EXAMPLES:
        lines = ["```console"]
        for cmd in ex.commands:
            shown = cmd.template.format(base=SHOWN_BASE, **values)
            real = (cmd.real or cmd.template).format(base=url, python=sys.executable, **values)
            r = subprocess.run(["bash", "-o", "pipefail", "-c", real], cwd=ROOT if cmd.in_project else work, env=env,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
            if r.returncode != 0 and not r.stdout:
                raise RuntimeError(f"example {ex.name}: `{real}` failed ({r.returncode}): {r.stderr}")
            lines.append(f"$ {shown}")
            if not cmd.quiet:
                lines.append(cmd.fmt(r.stdout))
            if ex.name == "infer-binary" and "-D headers.txt" in cmd.template:
                header = (work / "headers.txt").read_text()
                n = int(re.search(r"inference-header-content-length:\s*(\d+)", header, re.IGNORECASE).group(1))
                values.update(answer_header=n, answer_binary=(work / "answer.bin").stat().st_size - n)
            raw[ex.name] = r.stdout
        lines.append("```")
        out[ex.name] = "\n".join(lines) + "\n"
    return out, raw


# ---- blocks from files -----------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 0.01 else f"{x:.4f}".rstrip("0").rstrip(".")


def classify_fields(answer: dict[str, Any], facts: dict[str, Any], threshold_source: str) -> str:
    """The README's table: each field of the classify answer, its value here, what it means."""
    p, thr = answer["p_adv"], answer["threshold"]
    top = ", ".join(f"{t['class']} {_num(t['probability'])}" for t in answer["top_k"])
    verdict_why = f"p_adv {_num(p)} {'>=' if p >= thr else '<'} threshold {_num(thr)}"
    rows = [
        ("model, version", f"{answer['model']}, {answer['version']}",
         "the version that answered: the URL names none, so the highest ready one"),
        ("class, class_index", f"{answer['class']}, {answer['class_index']}",
         f"the predicted class, by name (the manifest's class_names) and index; the digit is a {facts['digit_label']}"),
        ("probability", _num(answer["probability"]), "softmax probability of that class, from the blended network"),
        ("top_k", top, "the best classes, best first (`top_k`, default `AWNET_DEFAULT_TOP_K` = 5)"),
        ("p_adv", _num(p), "the router's score: how adversarial the input looks, in [0, 1]"),
        ("mix", _num(answer["mix"]), "the blend of the two branches actually used, 0 = clean branch, 1 = robust "
         "branch; in `mode` auto it is p_adv"),
        ("mode", answer["mode"], "auto (the router picks the mix), or clean / robust as the request forced it"),
        ("verdict", answer["verdict"], f"`adversarial` when p_adv >= threshold, whatever the mode: here {verdict_why}"),
        ("threshold", _num(thr), f"the version's router threshold (source: {threshold_source}; "
         "`AWNET_THRESHOLD` overrides it)"),
    ]  # fmt: skip
    lines = ["| field | in this answer | meaning |", "|---|---|---|"]
    lines += [f"| `{f.replace(', ', '`, `')}` | {v} | {m} |" for f, v, m in rows]
    return "\n".join(lines) + "\n"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def card_sentence(model_dir: Path) -> str:
    """What one served version withstands, in one sentence, from its evaluation card."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    kind = {"awnet": "AW-Net", "static": "static model"}.get(manifest.get("kind"), manifest.get("kind", "?"))
    who = f"`{manifest['name']}/{manifest['version']}` ({kind} `{manifest.get('arch', '?')}`, trained on `{manifest.get('dataset', '?')}`)"
    card_path = model_dir / "evaluation.json"
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        s, w = card["settings"], card["worst_case"]
        attacks, clean = card["attacks"], card["clean"]
        # the path from the project root (models/repository/...), also for a copy at DIR/models/repository
        n_attacks, where = len(attacks), f"`{(model_dir / 'evaluation.md').relative_to(model_dir.parents[3]).as_posix()}`"
        weakest = min(attacks, key=lambda a: a["acc"])
        text = (f"{who}: on {s['n']} {s['split']} images at L-inf eps {s['eps']:g}, under {n_attacks} attacks "
                f"(budget `{s['budget']}`, the adaptive ones included), **{_pct(clean['acc'])} clean** and "
                f"**{_pct(w['acc'])} worst case** per image (WRA {_pct(w['wra'])}; the strongest single attack leaves "
                f"{_pct(weakest['acc'])}: {weakest['title']})")  # fmt: skip
        if w.get("missed") is not None and s.get("threshold") is not None:
            worst = max(attacks, key=lambda a: (a.get("router") or {}).get("missed", 0.0))
            text += (f"; its router flags p_adv >= {_num(s['threshold'])} ({_pct(clean['router_fpr'])} of clean images) "
                     f"and flags {_pct(w['detected_share'])} of the images some attack fools, so **{_pct(w['missed'])} "
                     f"are missed** (fooled and not flagged), most by {worst['title']} "
                     f"({_pct(worst['router']['missed'])})")  # fmt: skip
        passed = all(c["passed"] for c in card.get("sanity", []))
        return text + f"; sanity checks {'passed' if passed else '**failed**'} (card: {where})."
    robustness = (manifest.get("evaluation") or {}).get("robustness")
    if robustness:
        return (f"{who}: {_pct(robustness['clean_acc'])} clean and {_pct(robustness['worst_case_acc'])} worst case "
                f"on {robustness['samples']} images at eps {robustness['eps']:g} (the manifest's card).")  # fmt: skip
    return f"{who}: no evaluation card: nothing is claimed."


def shipped_models(repository: Path) -> str:
    dirs = sorted((p.parent for p in repository.glob("*/*/manifest.json")), key=lambda d: (d.parent.name, int(d.name)))
    return "".join(f"- {card_sentence(d)}\n" for d in dirs)


# ---- the documents ---------------------------------------------------------------------------


def render(repository: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """({block name: body}, {docs/examples file: bytes}) for ``repository``."""
    with tempfile.TemporaryDirectory(prefix="docs-examples-") as tmp, serving(repository) as url:
        model, version = example_model(url)
        files, facts = make_inputs(repository / model / version)
        work = Path(tmp)
        (work / EXAMPLES_DIR).mkdir(parents=True)
        for name, data in files.items():
            (work / EXAMPLES_DIR / name).write_bytes(data)
        values = {"model": model, "version": version, **facts}
        blocks, raw = run_examples(url, work, values)
        answer = json.loads(raw["classify"])
        listed = json.loads(_get(url + "/v1/models")[1])["models"]
        source = next(m.get("threshold_source", "?") for m in listed if (m["name"], m["version"]) == (model, version))
    blocks["classify-fields"] = classify_fields(answer, facts, source)
    blocks["shipped-models"] = shipped_models(repository)
    return blocks, files


def splice(text: str, blocks: dict[str, str], where: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in blocks:
            raise SystemExit(f"docs_examples: {where} has a block {name!r} this script does not write")
        return BEGIN.format(name=name) + blocks[name] + m.group("end")

    return BLOCK.sub(repl, text)


def stale(docs: list[Path], blocks: dict[str, str], files: dict[str, bytes]) -> list[str]:
    """A diff per block (or input file) that differs from what was just produced."""
    problems = []
    for doc in docs:
        for m in BLOCK.finditer(doc.read_text()):
            name, body = m.group("name"), m.group("body")
            if name not in blocks:
                problems.append(f"{doc.relative_to(ROOT)}: unknown block {name!r}")
            elif not same(body, blocks[name]):
                diff = difflib.unified_diff(body.splitlines(), blocks[name].splitlines(), "committed", "the service now", lineterm="", n=1)
                problems.append(f"{doc.relative_to(ROOT)}, block {name!r}:\n" + "\n".join(list(diff)[:40]))
    for name, data in files.items():
        path = ROOT / EXAMPLES_DIR / name
        if not path.is_file() or not same_input(name, path.read_bytes(), data):
            problems.append(f"{EXAMPLES_DIR}/{name}: not what this script writes for this repository")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a block or input is stale")
    p.add_argument("--repository", type=Path, default=ROOT / "models" / "repository", help="model repository (default: %(default)s)")
    a = p.parse_args(argv)
    for tool in ("curl", "base64"):
        if shutil.which(tool) is None:
            p.error(f"{tool} not found on PATH (scripts/install_system_deps.sh installs curl)")
    blocks, files = render(a.repository.resolve())
    if a.check:
        problems = stale(DOCS, blocks, files)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"docs_examples: {len(problems)} stale; run `.venv/bin/python scripts/docs_examples.py`", file=sys.stderr)
            return 1
        print(f"docs_examples: every block and input is current ({sum(len(BLOCK.findall(d.read_text())) for d in DOCS)} blocks)")
        return 0
    (ROOT / EXAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = ROOT / EXAMPLES_DIR / name
        if not path.is_file() or not same_input(name, path.read_bytes(), data):
            path.write_bytes(data)
    for doc in DOCS:
        text = doc.read_text()
        new = splice(text, blocks, str(doc.relative_to(ROOT)))
        if new != text:
            doc.write_text(new)
            print(f"docs_examples: rewrote {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
