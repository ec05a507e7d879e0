#!/usr/bin/env bash
# Run one curl per endpoint of a running AW-Net Serve and print each command with its real
# output, as Markdown, ready to paste into the README.
#
#   make serve                                   # in another terminal (or python -m service)
#   scripts/readme_curl_examples.sh [BASE_URL] [MODEL] > /tmp/curl-examples.md
#
# BASE_URL defaults to http://127.0.0.1:8000, MODEL to awnet-mnist. With AWNET_API_KEY set,
# inference requests send it as a bearer token. Needs curl and the project's Python (Pillow,
# numpy) to draw the test digit; set PYTHON to use another interpreter.
set -euo pipefail

cd "$(dirname "$0")/.."
BASE="${1:-${AWNET_URL:-http://127.0.0.1:8000}}"
MODEL="${2:-awnet-mnist}"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;; esac
AUTH=()
if [ -n "${AWNET_API_KEY:-}" ]; then AUTH=(-H "Authorization: Bearer ${AWNET_API_KEY}"); fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# A hand-drawn "7" (light strokes on black, like MNIST), the model's input size, as PNG, as
# a JSON pixel array, as a v2 JSON request and as a v2 binary request.
"$PY" - "$TMP" "$BASE" "$MODEL" <<'PYEOF'
import json, sys, urllib.request
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

tmp, base, model = sys.argv[1:4]
try:
    meta = json.load(urllib.request.urlopen(f"{base}/v2/models/{model}"))
    _, c, h, w = meta["inputs"][0]["shape"]
except Exception:  # the metadata call is shown below anyway
    c, h, w = 1, 28, 28
img = Image.new("L", (w, h), 0)
d = ImageDraw.Draw(img)
s = w / 28
d.line([(7 * s, 7 * s), (20 * s, 7 * s), (12 * s, 22 * s)], fill=255, width=max(2, round(2.5 * s)))
img = img.filter(ImageFilter.GaussianBlur(0.6 * s))
if c == 3:
    img = img.convert("RGB")
img.save(f"{tmp}/digit.png")
px = np.asarray(img, dtype=np.float32) / 255.0
px = px[None] if px.ndim == 2 else px.transpose(2, 0, 1)
json.dump({"pixels": np.round(px, 4).tolist(), "mode": "auto", "top_k": 3},
          open(f"{tmp}/pixels.json", "w"))
json.dump({"id": "readme-1",
           "inputs": [{"name": "image", "datatype": "FP32", "shape": [1, c, h, w],
                       "data": np.round(px, 4).ravel().tolist()}],
           "outputs": [{"name": "probabilities", "parameters": {"classification": 3}},
                       {"name": "p_adv"}, {"name": "mix"}, {"name": "adversarial"}]},
          open(f"{tmp}/infer.json", "w"))
blob = px.astype("<f4").tobytes()
head = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, c, h, w],
                               "parameters": {"binary_data_size": len(blob)}}],
                   "outputs": [{"name": "logits", "parameters": {"binary_data": True}},
                               {"name": "p_adv", "parameters": {"binary_data": False}}]}).encode()
open(f"{tmp}/infer.bin", "wb").write(head + blob)
open(f"{tmp}/infer.len", "w").write(str(len(head)))
PYEOF

pretty() {  # indented JSON when short, one line when long (e.g. the manifests)
  "$PY" -c 'import json,sys
raw = sys.stdin.read()
try:
    obj = json.loads(raw)
except Exception:
    print(raw); sys.exit()
text = json.dumps(obj, indent=2)
print(text if len(text) <= 2000 else json.dumps(obj))'; }

show() {  # show <title> <shown command> -- <curl args...>
  local title="$1" shown="$2"; shift 3
  printf '### %s\n\n```console\n$ %s\n' "$title" "$shown"
  curl -sS "$@" | pretty
  printf '```\n\n'
}

cd "$TMP"
show "Server metadata" "curl -s $BASE/v2" -- "$BASE/v2"
show "Liveness" "curl -s $BASE/v2/health/live" -- "$BASE/v2/health/live"
show "Readiness" "curl -s $BASE/v2/health/ready" -- "$BASE/v2/health/ready"
show "List models (with manifests)" "curl -s $BASE/v1/models" -- "$BASE/v1/models"
show "Classify an image (multipart upload)" \
  "curl -s -F file=@digit.png $BASE/v1/models/$MODEL/classify" \
  -- "${AUTH[@]}" -F file=@digit.png "$BASE/v1/models/$MODEL/classify"
show "Classify an image (raw body, forced robust branch)" \
  "curl -s -H 'Content-Type: image/png' --data-binary @digit.png '$BASE/v1/models/$MODEL/classify?mode=robust&top_k=3'" \
  -- "${AUTH[@]}" -H 'Content-Type: image/png' --data-binary @digit.png "$BASE/v1/models/$MODEL/classify?mode=robust&top_k=3"
show "Classify a base64 image (JSON)" \
  "curl -s -H 'Content-Type: application/json' -d '{\"image_b64\": \"'\$(base64 -w0 digit.png)'\", \"mode\": \"clean\"}' $BASE/v1/models/$MODEL/classify" \
  -- "${AUTH[@]}" -H 'Content-Type: application/json' \
  -d "{\"image_b64\": \"$(base64 -w0 digit.png)\", \"mode\": \"clean\"}" "$BASE/v1/models/$MODEL/classify"
show "Classify a pixel array (JSON)" \
  "curl -s -H 'Content-Type: application/json' -d @pixels.json $BASE/v1/models/$MODEL/classify" \
  -- "${AUTH[@]}" -H 'Content-Type: application/json' -d @pixels.json "$BASE/v1/models/$MODEL/classify"
show "Model metadata (v2)" "curl -s $BASE/v2/models/$MODEL" -- "$BASE/v2/models/$MODEL"
show "Model version metadata (v2)" "curl -s $BASE/v2/models/$MODEL/versions/1" -- "$BASE/v2/models/$MODEL/versions/1"
show "Model readiness (v2)" "curl -s $BASE/v2/models/$MODEL/ready" -- "$BASE/v2/models/$MODEL/ready"
show "Model version readiness (v2)" "curl -s $BASE/v2/models/$MODEL/versions/1/ready" -- "$BASE/v2/models/$MODEL/versions/1/ready"
show "Inference, JSON tensors (v2; top-3 via the classification extension)" \
  "curl -s -H 'Content-Type: application/json' -d @infer.json $BASE/v2/models/$MODEL/infer" \
  -- "${AUTH[@]}" -H 'Content-Type: application/json' -d @infer.json "$BASE/v2/models/$MODEL/infer"
show "Inference on a given version (v2)" \
  "curl -s -H 'Content-Type: application/json' -d @infer.json $BASE/v2/models/$MODEL/versions/1/infer" \
  -- "${AUTH[@]}" -H 'Content-Type: application/json' -d @infer.json "$BASE/v2/models/$MODEL/versions/1/infer"

# Binary tensor extension: JSON header, then raw float32; the answer has a JSON header
# (Inference-Header-Content-Length bytes) followed by the binary outputs.
LEN="$(cat infer.len)"
printf '### Inference, binary tensors (v2 binary tensor extension)\n\n```console\n'
printf '$ curl -s -D headers.txt -o answer.bin -H "Inference-Header-Content-Length: %s" -H "Content-Type: application/octet-stream" --data-binary @infer.bin %s\n' \
  "$LEN" "$BASE/v2/models/$MODEL/infer"
curl -sS -D headers.txt -o answer.bin "${AUTH[@]}" -H "Inference-Header-Content-Length: $LEN" \
  -H "Content-Type: application/octet-stream" --data-binary @infer.bin "$BASE/v2/models/$MODEL/infer"
printf '$ grep -i -E "content-type|inference-header" headers.txt\n'
grep -i -E "content-type|inference-header" headers.txt | tr -d '\r'
RLEN="$(grep -i inference-header-content-length headers.txt | tr -dc '0-9')"
printf '$ head -c %s answer.bin   # the JSON header; %s bytes of binary tensors follow\n' \
  "$RLEN" "$(( $(stat -c %s answer.bin) - RLEN ))"
head -c "$RLEN" answer.bin; printf '\n```\n\n'

show "Repository index (Triton extension)" "curl -s -X POST $BASE/v2/repository/index" \
  -- -X POST "$BASE/v2/repository/index"

printf '### Prometheus metrics (excerpt)\n\n```console\n'
printf '$ curl -s %s/metrics | grep -E "^awnet_(inputs_total|model_info|model_ready|router_score_count|batch_size_count)"\n' "$BASE"
curl -sS "$BASE/metrics" | grep -E '^awnet_(inputs_total|model_info|model_ready|router_score_count|batch_size_count)' || true
printf '```\n\n'

printf '### An error (wrong tensor shape: 400 in the protocol'"'"'s error form)\n\n```console\n'
printf "\$ curl -s -H 'Content-Type: application/json' -d '{\"inputs\": [{\"name\": \"image\", \"datatype\": \"FP32\", \"shape\": [1, 3], \"data\": [0, 0, 0]}]}' %s/v2/models/%s/infer\n" "$BASE" "$MODEL"
curl -sS "${AUTH[@]}" -H 'Content-Type: application/json' \
  -d '{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}' \
  "$BASE/v2/models/$MODEL/infer"
printf '\n```\n\nOpenAPI docs: %s/docs\n' "$BASE"
