"""Service settings: every setting is an environment variable with the prefix ``AWNET_``.

Read by pydantic-settings and validated when the service starts; an invalid value stops the
start with a message naming the variable (see ``format_validation_error``). The table of
settings with their defaults is in docs/service.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "AWNET_"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Short names accepted in AWNET_PROVIDERS, mapped to ONNX Runtime's provider names.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


def _split_commas(value: object) -> object:
    """A comma-separated string as its non-empty, stripped parts; other values as they are."""
    if isinstance(value, str):
        return [part for part in (p.strip() for p in value.split(",")) if part]
    return value


class Settings(BaseSettings):
    """All settings of the service (environment variables ``AWNET_<FIELD NAME IN CAPITALS>``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
    )

    # --- server -------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address uvicorn binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    keep_alive_s: int = Field(5, ge=1, le=3600, description="HTTP keep-alive timeout, seconds.")
    workers: int = Field(
        1, ge=1, le=64, description="Server processes on the port (SO_REUSEPORT), each with its "
        "own sessions; more than 1 needs AWNET_MODEL_CONTROL_MODE=none (docs/service.md)."
    )
    http: Literal["httptools", "h11"] = Field(
        "httptools", description="HTTP/1.1 parser of `python -m service`: httptools (C) or h11 "
        "(pure Python; also the fallback when httptools is not installed)."
    )
    loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop of `python -m service`: uvloop (libuv) or asyncio's "
        "(also the fallback when uvloop is not installed)."
    )
    gil_switch_interval_ms: float = Field(
        0.5, gt=0, le=100, description="Python's thread switch interval (sys.setswitchinterval; "
        "Python's default 5): how long the event loop may keep the GIL when the model thread, "
        "back from ONNX Runtime, asks for it (docs/benchmark.md)."
    )

    # --- models and runtime -------------------------------------------------------------
    model_repository: Path = Field(
        Path("models/repository"),
        description="Model repository folder (<name>/<version>/model.onnx + manifest.json).",
    )
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers in order of preference, comma-separated "
        "(full names or cpu, cuda, tensorrt).",
    )
    intra_op_threads: int = Field(
        0, ge=0, le=1024, description="ORT intra-op threads (0 = each worker's share of the "
        "available cores but one, which its event loop needs; at least 1)."
    )
    inter_op_threads: int = Field(0, ge=0, le=1024, description="ORT inter-op threads (0 = ORT default).")
    ort_log_severity: int = Field(3, ge=0, le=4, description="ORT log severity (0 verbose .. 4 fatal).")
    ort_allow_spinning: bool = Field(
        False, description="Let ORT's intra-op threads spin-wait between calls (ORT's own "
        "default; off here: on small machines the spinning takes the event loop's core)."
    )
    cuda_device_id: int = Field(0, ge=0, le=64, description="CUDA execution provider: GPU id.")
    cuda_arena_extend_strategy: Literal["kSameAsRequested", "kNextPowerOfTwo"] = Field(
        "kSameAsRequested", description="CUDA memory arena growth (kSameAsRequested: by what "
        "a call asks, not by powers of two)."
    )
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "EXHAUSTIVE", description="cuDNN convolution algorithm search (EXHAUSTIVE: tried once "
        "per input shape, during the warm-up)."
    )
    cuda_mem_limit_bytes: int = Field(0, ge=0, description="CUDA arena limit in bytes (0 = none).")
    io_binding: bool = Field(True, description="On CUDA, run each call through IO binding.")
    warmup_runs: int = Field(1, ge=0, le=1000, description="Warm-up calls per batch shape before a model is ready.")
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Router threshold for every model (default: the manifest's)."
    )
    default_top_k: int = Field(5, ge=1, le=1000, description="Top-k returned by /v1 classify when not asked.")

    # --- model lifecycle (docs/lifecycle.md) ---------------------------------------------
    model_control_mode: Literal["none", "poll", "explicit"] = Field(
        "none", description="none: load the repository once at start; poll: re-read it every "
        "AWNET_REPOSITORY_POLL_S; explicit: POST /v2/repository/models/{name}/load|unload."
    )
    repository_poll_s: float = Field(
        15.0, ge=0.1, le=86_400.0, description="Seconds between repository scans (poll mode)."
    )
    version_policy: str = Field(
        "all", description="Versions served per model: all, latest:N or specific:V1,V2 "
        "(a manifest's version_policy overrides it for its model)."
    )
    probes_on_load: bool = Field(
        True, description="Run a version's probe set before it takes traffic (a failure keeps "
        "it UNAVAILABLE); versions without probes load with a warning."
    )
    canary_interval_s: float = Field(
        0.0, ge=0.0, le=86_400.0, description="Re-run each ready version's probes every this "
        "many seconds, only while it is idle (0 = canary off)."
    )
    unload_drain_s: float = Field(
        30.0, ge=0.0, le=3600.0, description="Max seconds an unloading version waits for the "
        "requests that already hold it."
    )

    # --- batching ----------------------------------------------------------------------
    max_batch_size: int = Field(32, ge=1, le=4096, description="Max inputs per ONNX Runtime call.")
    max_queue_delay_ms: float = Field(
        0.0, ge=0.0, le=10_000.0, description="Extra wait for a batch to fill while the model is "
        "idle (0: adaptive batching only: run at once, batch what arrives during a call)."
    )
    inline_max_ms: float = Field(
        2.0, ge=0.0, le=1_000.0, description="A one-image request alone in the server (no "
        "other request, no other connection) runs its model call on the event loop, without "
        "the two thread hand-offs, while that model's recent one-image call takes less than "
        "this (it blocks the loop that long at most); 0: always through the model's thread."
    )
    max_queue_size: int = Field(1024, ge=1, le=1_000_000, description="Max inputs waiting per model version.")
    request_timeout_s: float = Field(10.0, gt=0.0, le=3600.0, description="Per-request inference timeout.")
    retry_after_s: int = Field(1, ge=0, le=3600, description="Retry-After sent with 503 queue full.")
    body_timeout_s: float = Field(
        30.0, gt=0.0, le=3600.0, description="Max seconds to receive a whole request body "
        "(slow clients get 408)."
    )
    header_timeout_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="Max seconds for a new connection to send its "
        "request line and headers (slowloris); the connection is closed after that."
    )

    # --- limits --------------------------------------------------------------------------
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Max request body (bytes).")
    max_image_pixels: int = Field(
        4096 * 4096, ge=1, description="Max width x height of an uploaded image (decompression bombs)."
    )
    max_request_batch: int = Field(256, ge=1, description="Max inputs in one request.")
    max_headers: int = Field(100, ge=10, le=10_000, description="Max request headers (431 above).")
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="Max bytes of request headers (431 above)."
    )
    resize_tolerance: float = Field(
        0.10, ge=0.0, le=1.0, description="Images are resized when their aspect ratio is within this "
        "relative tolerance of the model's; otherwise they are rejected."
    )

    # --- security ------------------------------------------------------------------------
    api_key: SecretStr | None = Field(
        None, description="When set, inference endpoints require 'Authorization: Bearer <key>'."
    )
    forwarded_allow_ips: str | None = Field(
        None, description="Proxies whose X-Forwarded-For and X-Forwarded-Proto are trusted "
        "(comma-separated IPs or networks, or *); unset: the headers are ignored and the "
        "client is the connection's peer."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins allowed by CORS, comma-separated "
        "(empty: no CORS headers at all, browsers on other origins are refused)."
    )

    # --- shutdown -----------------------------------------------------------------------
    shutdown_delay_s: float = Field(
        0.0, ge=0.0, le=600.0, description="After SIGTERM: seconds readiness is false while "
        "requests are still accepted (lets load balancers notice)."
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0.0, le=3600.0, description="Max seconds to finish in-flight requests on shutdown."
    )

    # --- logging ------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level."
    )
    log_format: Literal["json", "text"] = Field("json", description="json (one object a line) or text.")
    access_log: bool = Field(
        True, description="One log line per request (method, path, status, duration, model, "
        "request id); off saves its share of each request's CPU (docs/benchmark.md)."
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("version_policy")
    @classmethod
    def _check_version_policy(cls, value: str) -> str:
        from artifact_contract.policy import VersionPolicy

        return str(VersionPolicy.parse(value))

    @property
    def policy(self):  # noqa: ANN201 - artifact_contract.VersionPolicy
        from artifact_contract.policy import VersionPolicy

        return VersionPolicy.parse(self.version_policy)

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one execution provider is needed, e.g. 'cpu'")
        import onnxruntime  # local: keeps `import service.settings` light

        known = set(onnxruntime.get_all_providers())
        resolved: list[str] = []
        for name in value:
            full = PROVIDER_ALIASES.get(name.lower(), name)
            if full not in known:
                raise ValueError(
                    f"unknown execution provider {name!r}; use one of "
                    f"{', '.join(sorted(PROVIDER_ALIASES))} or a full ONNX Runtime name"
                )
            if full not in resolved:
                resolved.append(full)
        return resolved

    @field_validator("model_repository")
    @classmethod
    def _check_repository(cls, value: Path) -> Path:
        candidates = [value]
        if not value.is_absolute():
            # Relative paths are relative to the working directory, else to the project root
            # (so that the default serves the shipped model from anywhere in a source checkout).
            candidates.append(PROJECT_ROOT / value)
        for candidate in candidates:
            if candidate.is_dir():
                return candidate.resolve()
        raise ValueError(
            f"model repository {str(value)!r} is not a directory "
            f"(looked in: {', '.join(str(c.resolve()) for c in candidates)})"
        )

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.max_request_batch > self.max_queue_size:
            raise ValueError(
                f"AWNET_MAX_REQUEST_BATCH ({self.max_request_batch}) must not exceed "
                f"AWNET_MAX_QUEUE_SIZE ({self.max_queue_size}): such a request could never "
                "be queued"
            )
        if self.workers > 1 and self.model_control_mode != "none":
            raise ValueError(
                f"AWNET_WORKERS={self.workers} needs AWNET_MODEL_CONTROL_MODE=none, not "
                f"{self.model_control_mode!r}: each worker process holds its own models, so a "
                "load, an unload or a poll would change one worker and not the others (roll "
                "new versions out by restarting, or run one worker)"
            )
        return self

    @property
    def max_queue_delay_s(self) -> float:
        return self.max_queue_delay_ms / 1000.0

    @property
    def inline_max_s(self) -> float:
        return self.inline_max_ms / 1000.0

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key is not None else None


def unknown_env_vars(environ: dict[str, str] | None = None) -> list[str]:
    """``AWNET_*`` variables that match no setting (likely typos); the service warns about them."""
    environ = dict(os.environ) if environ is None else environ
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in fields)


def format_validation_error(error: ValidationError) -> str:
    """A message naming each bad environment variable, for the start-up failure."""
    lines = ["invalid service settings:"]
    for item in error.errors():
        loc = item.get("loc") or ()
        field = str(loc[0]) if loc else ""
        name = ENV_PREFIX + field.upper() if field else "(settings)"
        value = os.environ.get(name) if field else None
        shown = f"={value!r}" if value is not None else ""
        msg = item.get("msg", "invalid")
        lines.append(f"  {name}{shown}: {msg}")
    return "\n".join(lines)
