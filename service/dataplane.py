"""The data plane: a request's inputs checked against the version it asks for, run through
that version's ``predict``, and shaped into a protocol-neutral result (service/inference.py).

Used by every API (``routes_v1``: images, ``routes_v2``: tensors; a gRPC front end takes the
same path): no HTTP objects, no wire formats, only numpy arrays, result objects and domain
errors (``service.errors``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from artifact_contract import INPUT_IMAGE, INPUT_MIX, OUTPUT_LOGITS, OUTPUT_MIX, OUTPUT_P_ADV
from service.errors import BadInput
from service.inference import (
    MODES,
    OUTPUTS,
    Classification,
    InferRequest,
    InferResult,
    OutputTensor,
    TopClass,
    classify_strings,
    parse_mode,
)
from service.metrics import Metrics
from service.model_metadata import model_config, model_metadata
from service.postprocess import OUTPUT_ADVERSARIAL, OUTPUT_PROBABILITIES
from service.repository import ModelRepository
from service.served_model import ServedModel
from service.settings import Settings


class DataPlane:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics

    # --- what a version declares --------------------------------------------------------------
    @staticmethod
    def metadata(mv: ServedModel, repository: ModelRepository) -> dict[str, Any]:
        return model_metadata(mv, sorted(repository.versions.get(mv.name, {}), key=int))

    def config(self, mv: ServedModel) -> dict[str, Any]:
        return model_config(mv, self.settings)

    # --- one image ----------------------------------------------------------------------------
    async def classify(self, mv: ServedModel, pixels: np.ndarray, *, mode: str,
                       top_k: int | None) -> Classification:  # fmt: skip
        """``pixels``: ``[C, H, W]`` already decoded."""
        art = mv.artifact
        assert art is not None
        with mv.stage("decode"):
            k = self.settings.default_top_k if top_k is None else top_k
            if k < 1:
                raise BadInput(f"top_k must be at least 1, got {k}")
            k = min(k, art.num_classes)
            image = mv.check_image(pixels[None, ...], "image", self.settings.max_request_batch)
            mix = np.full((1,), MODES[mode], dtype=np.float32)
        pred = await mv.predict(image, mix, self.settings.request_timeout_s)
        probs = pred.probabilities[0]
        order = np.argsort(-probs, kind="stable")[:k]
        return Classification(
            model=mv.name,
            version=mv.version,
            top_k=[TopClass(art.class_names[int(i)], int(i), float(probs[i])) for i in order],
            p_adv=float(pred.p_adv[0]),
            mix=float(pred.mix[0]),
            mode=mode,
            adversarial=bool(pred.adversarial[0]),
            threshold=mv.threshold,
        )

    # --- tensors --------------------------------------------------------------------------------
    def _inputs(self, mv: ServedModel, req: InferRequest) -> tuple[np.ndarray, np.ndarray | None]:
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
        image = mv.check_image(req.inputs[INPUT_IMAGE], f"input '{INPUT_IMAGE}'", self.settings.max_request_batch)
        n = int(image.shape[0])
        mode = None
        if "mode" in req.parameters:
            if req.parameters["mode"] is None:
                raise BadInput("parameters.mode must be one of " + ", ".join(MODES))
            mode = parse_mode(req.parameters["mode"])
        if INPUT_MIX in req.inputs:  # an explicit per-input mix wins over parameters.mode
            return image, mv.check_mix(req.inputs[INPUT_MIX], n, f"input '{INPUT_MIX}'")
        if mode is not None:
            return image, np.full((n,), MODES[mode], dtype=np.float32)
        return image, None

    @staticmethod
    def _check_outputs(req: InferRequest) -> None:
        for out in req.outputs or ():
            if out.name not in OUTPUTS:
                raise BadInput(f"unknown output {out.name!r}; outputs are {', '.join(OUTPUTS)}")
            if out.classification and out.name not in (OUTPUT_LOGITS, OUTPUT_PROBABILITIES):
                raise BadInput(
                    f"classification is only available for '{OUTPUT_LOGITS}' and "
                    f"'{OUTPUT_PROBABILITIES}', not {out.name!r}"
                )

    async def infer(self, mv: ServedModel, req: InferRequest) -> InferResult:
        art = mv.artifact
        assert art is not None
        with mv.stage("decode"):
            image, mix = self._inputs(mv, req)
            self._check_outputs(req)
        pred = await mv.predict(image, mix, self.settings.request_timeout_s)
        tensors = {
            OUTPUT_LOGITS: OutputTensor(OUTPUT_LOGITS, "FP32", pred.logits),
            OUTPUT_P_ADV: OutputTensor(OUTPUT_P_ADV, "FP32", pred.p_adv),
            OUTPUT_MIX: OutputTensor(OUTPUT_MIX, "FP32", pred.mix),
            OUTPUT_PROBABILITIES: OutputTensor(OUTPUT_PROBABILITIES, "FP32", pred.probabilities),
            OUTPUT_ADVERSARIAL: OutputTensor(OUTPUT_ADVERSARIAL, "BOOL", pred.adversarial),
        }
        if req.outputs is None:
            chosen = [(tensors[name], req.binary_output) for name in OUTPUTS]
        else:
            chosen = []
            for out in req.outputs:
                tensor = tensors[out.name]
                if out.classification:
                    strings = classify_strings(tensor.data, out.classification, list(art.class_names))
                    tensor = OutputTensor(out.name, "BYTES", strings)
                chosen.append((tensor, req.binary_output if out.binary is None else out.binary))
        return InferResult(mv.name, mv.version, req.id, chosen, {"threshold": mv.threshold})
