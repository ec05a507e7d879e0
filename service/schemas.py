"""The shapes of the API's answers and error bodies, for the OpenAPI document.

Routes build their answers as plain dicts (fast, no re-validation); these models say what
those dicts hold, and ``service.openapi`` puts them in the document, so that a client
generated from it reads the real answers. Request bodies are described in ``service.openapi``
(they depend on the served models' input shapes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    """Answers may gain fields; clients ignore what they do not know."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every error answer (Open Inference Protocol shape)."""

    model_config = ConfigDict(extra="forbid")
    error: str = Field(description="What went wrong, for a person.")


# --- v2 -----------------------------------------------------------------------------------------
class ServerMetadata(_Open):
    name: str
    version: str
    extensions: list[str]


class Liveness(_Open):
    live: Literal[True]


class Readiness(_Open):
    ready: Literal[True]


class ModelReadiness(_Open):
    name: str
    version: str
    ready: Literal[True]


class TensorMetadata(_Open):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dynamic dimension (the batch N).")
    optional: bool | None = None


class ModelMetadata(_Open):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    version: str
    state: str = Field(description="LOADING, READY, UNAVAILABLE or UNLOADING.")
    reason: str | None
    provider: str | None
    kind: str | None
    threshold: float | None
    class_names: list[str] | None


class ModelConfig(_Open):
    """Triton-style model configuration."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any]
    version_policy: dict[str, Any]


class RepositoryIndexEntry(_Open):
    name: str
    version: str
    state: str
    reason: str


class ResponseOutput(_Open):
    name: str
    datatype: Literal["FP32", "BOOL", "BYTES"]
    shape: list[int]
    data: list[float | bool | str] | None = Field(
        None, description="Row-major values; absent when the tensor is sent as binary data."
    )
    parameters: dict[str, Any] | None = Field(
        None, description="binary_data_size: byte length of this output in the binary part."
    )


class InferenceResponse(_Open):
    """KServe v2 inference response (its JSON part, when binary outputs follow)."""

    model_name: str
    model_version: str
    id: str | None = Field(None, description="The request's id, when it had one.")
    parameters: dict[str, Any] | None = Field(None, description="threshold: the router's.")
    outputs: list[ResponseOutput]


# --- v1 -----------------------------------------------------------------------------------------
class ModelEntry(_Open):
    name: str
    version: str
    state: str
    reason: str | None
    provider: str | None
    providers: list[str] | None
    threshold: float | None
    threshold_source: str | None
    input_shape: list[int] | None
    class_names: list[str] | None
    manifest: dict[str, Any] | None


class ModelList(_Open):
    models: list[ModelEntry]


class ModelVersions(_Open):
    name: str
    versions: list[ModelEntry]


class ClassEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias="class")
    index: int
    probability: float


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    model: str
    version: str
    class_: str = Field(alias="class", description="Most probable class name.")
    class_index: int
    probability: float
    top_k: list[ClassEntry]
    p_adv: float = Field(description="Router's adversarial probability.")
    mix: float = Field(description="Mix actually used (0 clean branch .. 1 robust branch).")
    mode: Literal["auto", "clean", "robust"]
    verdict: Literal["clean", "adversarial"] = Field(description="adversarial when p_adv >= threshold")
    threshold: float


def error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Error answers, by status; routes pick the ones they can give.
ERRORS: dict[int, dict[str, Any]] = {
    400: error("Malformed input"),
    401: error("Missing or wrong API key"),
    404: error("Unknown model or version"),
    408: error("The body did not arrive in time (AWNET_BODY_TIMEOUT_S)"),
    413: error("Body, image or batch too large"),
    415: error("Unsupported content type, encoding or image format"),
    431: error("Too many request headers, or too large (AWNET_MAX_HEADERS, AWNET_MAX_HEADER_BYTES)"),
    500: error("Inference failed (the error names the request id in X-Request-ID)"),
    503: error("Not ready, shutting down, or queue full (then with Retry-After)"),
    504: error("No answer within the request timeout"),
}


def errors(*statuses: int) -> dict[int, dict[str, Any]]:
    return {s: ERRORS[s] for s in statuses}
