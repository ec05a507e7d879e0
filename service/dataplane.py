"""The data plane: validate inputs, run them through the router model, shape the answers.

Used by both APIs (``routes_v1``: images, ``routes_v2``: tensors). Everything here works on
numpy arrays and domain errors (``service.errors``); no HTTP objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from artifact_contract import INPUT_IMAGE, INPUT_MIX, OUTPUT_LOGITS, OUTPUT_MIX, OUTPUT_P_ADV
from service.codec_v2 import (
    InferRequest,
    OutputTensor,
    classify_strings,
    encode_infer_response,
)
from service.errors import BadInput, InferenceFailed, NotReady, TooLarge
from service.images import check_pixels
from service.metrics import Metrics
from service.postprocess import NONFINITE, OUTPUT_ADVERSARIAL, OUTPUT_PROBABILITIES
from service.repository import ModelVersion
from service.settings import Settings

# Per-request routing choice: the mix_override value sent to the graph.
MODES = {"auto": -1.0, "clean": 0.0, "robust": 1.0}

# Outputs of the v2 API: the graph's three, plus two the service derives (service/postprocess.py).
V2_OUTPUTS = (OUTPUT_LOGITS, OUTPUT_P_ADV, OUTPUT_MIX, OUTPUT_PROBABILITIES, OUTPUT_ADVERSARIAL)


@dataclass
class Prediction:
    """Results for a batch of N inputs."""

    logits: np.ndarray  # [N, K]
    probabilities: np.ndarray  # [N, K]
    p_adv: np.ndarray  # [N]
    mix: np.ndarray  # [N]
    adversarial: np.ndarray  # [N] bool
    threshold: float


_AUTO_MIX: dict[int, np.ndarray] = {}


def auto_mix(n: int) -> np.ndarray:
    """``[n]`` of -1 (the router decides), read-only and shared for small n."""
    mix = _AUTO_MIX.get(n)
    if mix is None:
        mix = np.full((n,), -1.0, dtype=np.float32)
        if n <= 256:
            mix.setflags(write=False)
            _AUTO_MIX[n] = mix
    return mix


FLOAT32_MAX = float(np.finfo(np.float32).max)


def parse_mode(mode: object) -> str:
    """``auto`` when not given; else exactly one of the names in ``MODES`` (as the schema)."""
    if mode is None:
        return "auto"
    if not isinstance(mode, str) or mode not in MODES:
        raise BadInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


class DataPlane:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics

    # --- core ---------------------------------------------------------------------------
    def validate_image(self, mv: ModelVersion, image: np.ndarray, what: str) -> np.ndarray:
        art = mv.artifact
        assert art is not None
        c, h, w = art.input_shape
        if image.ndim != 4 or tuple(image.shape[1:]) != (c, h, w):
            raise BadInput(
                f"{what} has shape {list(image.shape)}, the model takes [N, {c}, {h}, {w}]"
            )
        n = int(image.shape[0])
        if n == 0:
            raise BadInput(f"{what} has an empty batch (N = 0)")
        if n > self.settings.max_request_batch:
            raise TooLarge(
                f"{what} has a batch of {n} inputs, above the limit of "
                f"{self.settings.max_request_batch} per request (AWNET_MAX_REQUEST_BATCH)"
            )
        if image.dtype == np.float32 or image.dtype == np.float64:
            # The common case in two reductions: finite and inside the range (NaN and inf
            # show in the min or max). Anything else: check_pixels, for its exact answer.
            lo, hi = art.input_range
            vmin, vmax = float(image.min()), float(image.max())
            if lo <= vmin and vmax <= hi:  # False for NaN
                return image.astype(np.float32, copy=False)
        return check_pixels(image, art.input_range, what)

    @staticmethod
    def validate_mix(mix: np.ndarray, n: int, what: str) -> np.ndarray:
        if mix.ndim != 1 or mix.shape[0] != n:
            raise BadInput(f"{what} has shape {list(mix.shape)}, expected [{n}] (one per input)")
        if not np.all(np.isfinite(mix)):
            raise BadInput(f"{what} contains NaN or infinite values")
        if np.any(mix < -FLOAT32_MAX):
            raise BadInput(f"{what} has values below the float32 range")
        if np.any(mix > 1.0):
            raise BadInput(
                f"{what} has values above 1 (max {float(mix.max()):g}); use a value in [0, 1] "
                "to force a mix (0 = clean branch, 1 = robust branch) or a negative value "
                "for the router"
            )
        return mix.astype(np.float32, copy=False)

    async def infer(
        self, mv: ModelVersion, image: np.ndarray, mix_override: np.ndarray | None = None
    ) -> Prediction:
        """Run validated inputs through the batcher. The probabilities, verdicts and router
        metrics come with the batch (``service/postprocess.py``, ``repository._make_batcher``)."""
        if mv.batcher is None or not mv.ready:
            raise NotReady(f"model {mv.name} version {mv.version} is not ready")
        if mix_override is None:
            mix_override = auto_mix(int(image.shape[0]))
        out = await mv.batcher.submit(image, mix_override, self.settings.request_timeout_s)
        bad = out.get(NONFINITE)
        if bad is not None and bad.any():
            raise InferenceFailed(
                f"model {mv.name} version {mv.version} produced non-finite outputs"
            )
        return Prediction(
            logits=out[OUTPUT_LOGITS],
            probabilities=out[OUTPUT_PROBABILITIES],
            p_adv=out[OUTPUT_P_ADV],
            mix=out[OUTPUT_MIX],
            adversarial=out[OUTPUT_ADVERSARIAL],
            threshold=mv.threshold,
        )

    # --- v1: one image ----------------------------------------------------------------------
    async def classify(
        self, mv: ModelVersion, pixels: np.ndarray, *, mode: str, top_k: int | None
    ) -> dict[str, Any]:
        """``pixels``: ``[C, H, W]`` already decoded; returns the v1 JSON answer."""
        art = mv.artifact
        assert art is not None
        k = self.settings.default_top_k if top_k is None else top_k
        if k < 1:
            raise BadInput(f"top_k must be at least 1, got {k}")
        k = min(k, art.num_classes)
        image = self.validate_image(mv, pixels[None, ...], "image")
        mix = np.full((1,), MODES[mode], dtype=np.float32)
        pred = await self.infer(mv, image, mix)
        probs = pred.probabilities[0]
        order = np.argsort(-probs, kind="stable")[:k]
        best = int(order[0])
        p_adv = float(pred.p_adv[0])
        return {
            "model": mv.name,
            "version": mv.version,
            "class": art.class_names[best],
            "class_index": best,
            "probability": float(probs[best]),
            "top_k": [
                {"class": art.class_names[int(i)], "index": int(i), "probability": float(probs[i])}
                for i in order
            ],
            "p_adv": p_adv,
            "mix": float(pred.mix[0]),
            "mode": mode,
            "verdict": "adversarial" if bool(pred.adversarial[0]) else "clean",
            "threshold": mv.threshold,
        }

    # --- v2: tensors --------------------------------------------------------------------------
    async def infer_v2(self, mv: ModelVersion, req: InferRequest) -> tuple[bytes, dict[str, str]]:
        art = mv.artifact
        assert art is not None
        unknown = [name for name in req.inputs if name not in (INPUT_IMAGE, INPUT_MIX)]
        if unknown:
            raise BadInput(
                f"unknown input {unknown[0]!r}; the model takes '{INPUT_IMAGE}' and "
                f"optionally '{INPUT_MIX}'"
            )
        if INPUT_IMAGE not in req.inputs:
            raise BadInput(f"input '{INPUT_IMAGE}' is required")
        for name, datatype in req.datatypes.items():
            if datatype != "FP32":
                raise BadInput(f"input {name!r} has datatype {datatype}, the model takes FP32")
        image = self.validate_image(mv, req.inputs[INPUT_IMAGE], f"input '{INPUT_IMAGE}'")
        n = int(image.shape[0])
        mix: np.ndarray | None = None
        mode = None
        if "mode" in req.parameters:
            if req.parameters["mode"] is None:
                raise BadInput("parameters.mode must be one of " + ", ".join(MODES))
            mode = parse_mode(req.parameters["mode"])
        if INPUT_MIX in req.inputs:  # an explicit per-input mix wins over parameters.mode
            mix = self.validate_mix(req.inputs[INPUT_MIX], n, f"input '{INPUT_MIX}'")
        elif mode is not None:
            mix = np.full((n,), MODES[mode], dtype=np.float32)

        requested = req.outputs
        if requested is not None:
            for out in requested:
                if out.name not in V2_OUTPUTS:
                    raise BadInput(
                        f"unknown output {out.name!r}; outputs are {', '.join(V2_OUTPUTS)}"
                    )
                if out.classification and out.name not in (OUTPUT_LOGITS, OUTPUT_PROBABILITIES):
                    raise BadInput(
                        f"classification is only available for '{OUTPUT_LOGITS}' and "
                        f"'{OUTPUT_PROBABILITIES}', not {out.name!r}"
                    )

        pred = await self.infer(mv, image, mix)
        tensors = {
            OUTPUT_LOGITS: OutputTensor(OUTPUT_LOGITS, "FP32", pred.logits),
            OUTPUT_P_ADV: OutputTensor(OUTPUT_P_ADV, "FP32", pred.p_adv),
            OUTPUT_MIX: OutputTensor(OUTPUT_MIX, "FP32", pred.mix),
            OUTPUT_PROBABILITIES: OutputTensor(OUTPUT_PROBABILITIES, "FP32", pred.probabilities),
            OUTPUT_ADVERSARIAL: OutputTensor(OUTPUT_ADVERSARIAL, "BOOL", pred.adversarial),
        }
        chosen: list[tuple[OutputTensor, bool]] = []
        if requested is None:
            chosen = [(tensors[name], req.binary_output) for name in V2_OUTPUTS]
        else:
            for out in requested:
                tensor = tensors[out.name]
                if out.classification:
                    tensor = OutputTensor(
                        out.name, "BYTES",
                        classify_strings(tensor.data, out.classification, list(art.class_names)),
                    )
                binary = req.binary_output if out.binary is None else out.binary
                chosen.append((tensor, binary))
        return encode_infer_response(
            model_name=mv.name,
            model_version=mv.version,
            request_id=req.id,
            outputs=chosen,
            parameters={"threshold": mv.threshold},
        )
