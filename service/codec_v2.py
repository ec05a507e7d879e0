"""Open Inference Protocol (KServe v2) REST bodies: parse requests, encode responses.

Supports JSON tensors and the binary tensor data extension in both directions:

* request: header ``Inference-Header-Content-Length: <n>``; the body is ``n`` bytes of JSON,
  then each input with ``parameters.binary_data_size`` as raw little-endian row-major bytes,
  in the order of the ``inputs`` list;
* response: an output is binary when its request entry has ``parameters.binary_data: true``,
  or when the request has ``parameters.binary_data_output: true`` (what tritonclient sends
  when no outputs are listed); binary outputs carry ``parameters.binary_data_size`` and the
  response gets the same header;
* Triton's classification extension: ``parameters.classification: k`` on a ``[N, K]``
  output returns BYTES ``[N, k]`` strings ``"<value>:<index>:<label>"``, best first.

Request bodies may be gzip/deflate compressed (``Content-Encoding``), within the body limit.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import numpy as np

from service import jsonbody
from service.errors import BadInput, TooLarge, UnsupportedMediaType
from service.images import json_numbers
from service.inference import InferRequest, InferResult, RequestedOutput

HEADER_LENGTH = "Inference-Header-Content-Length"

# KServe datatype -> numpy little-endian dtype (the ones this service handles).
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
KNOWN_DATATYPES = (*DTYPES, "BYTES", "BF16")


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` gzip/deflate without inflating past ``limit`` bytes."""
    if not encoding or encoding.lower() == "identity":
        return body
    enc = encoding.lower()
    if enc not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} not supported (gzip, deflate)")
    wbits = 16 + zlib.MAX_WBITS if enc == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadInput(f"cannot decompress the {enc} body: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge(f"decompressed body exceeds the limit of {limit} bytes (AWNET_MAX_BODY_BYTES)")
    return out


def as_int(value: Any) -> int | None:
    """An integer as JSON Schema reads one (``3`` or ``3.0``, not ``true``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class _Inexact(Exception):
    """An integer field holds a float of 2**63 or more: maybe an integer orjson rounded."""


def _check_exact(values: Any, exact: bool) -> None:
    if not exact and any(isinstance(v, float) and abs(v) >= 2.0**63 for v in values):
        raise _Inexact


def _shape(value: Any, where: str, exact: bool = True) -> tuple[int, ...]:
    if isinstance(value, list):
        _check_exact(value, exact)
    dims = [as_int(d) for d in value] if isinstance(value, list) else [None]
    if not all(d is not None and d >= 0 for d in dims):
        raise BadInput(f"{where}: 'shape' must be a list of non-negative integers")
    return tuple(dims)  # type: ignore[arg-type]


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadInput(f"{where} must be true or false")
    return value


def _object(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``container[key]`` when it is an object, ``{}`` when absent; 400 for anything else
    (``null`` included: the schema says object)."""
    if key not in container:
        return {}
    value = container[key]
    if not isinstance(value, dict):
        raise BadInput(f"{where} must be an object")
    return value


def _non_negative_int(value: Any, exact: bool = True) -> int | None:
    _check_exact((value,), exact)
    n = as_int(value)
    return n if n is not None and n >= 0 else None


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Parse a v2 inference request body into arrays (shape and datatype as declared)."""
    if header_length is not None:
        try:
            json_len = int(header_length)
        except ValueError:
            raise BadInput(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < json_len <= len(body):
            raise BadInput(
                f"{HEADER_LENGTH} is {json_len} but the body has {len(body)} bytes"
            )
        head, binary = body[:json_len], memoryview(body)[json_len:]
    else:
        head, binary = body, memoryview(b"")
    hint = "" if header_length else f" (binary tensors need the {HEADER_LENGTH} header)"
    req, exact = jsonbody.loads_fast(head, "request body", hint)
    try:
        return _parse(req, binary, exact)
    except _Inexact:  # an integer beyond 64 bits in a shape or size: parse it exactly
        return _parse(jsonbody.loads(head, "request body", hint), binary, True)


def _parse(req: Any, binary: memoryview, exact: bool) -> InferRequest:
    if not isinstance(req, dict):
        raise BadInput("request body must be a JSON object with an 'inputs' list")

    params = _object(req, "parameters", "'parameters'")
    binary_output = _flag(params.get("binary_data_output", False), "parameters.binary_data_output")

    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadInput("request needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for i, tensor in enumerate(raw_inputs):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise BadInput(f"{where} must be an object")
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise BadInput(f"{where}: 'name' must be a non-empty string")
        where = f"input {name!r}"
        if name in inputs:
            raise BadInput(f"{where} is given twice")
        datatype = tensor.get("datatype")
        if datatype not in KNOWN_DATATYPES:
            raise BadInput(f"{where}: unknown datatype {datatype!r}")
        shape = _shape(tensor.get("shape"), where, exact)
        tparams = _object(tensor, "parameters", f"{where}: 'parameters'")
        if any(k.startswith("shared_memory") for k in tparams):
            raise BadInput(f"{where}: shared memory is not supported by this server")
        if datatype in ("BYTES", "BF16"):
            raise BadInput(f"{where}: datatype {datatype} is not supported by this model")
        dtype = DTYPES[datatype]
        count = math.prod(shape)  # Python ints: no overflow whatever the client claims
        if "binary_data_size" in tparams:
            size = _non_negative_int(tparams["binary_data_size"], exact)
            if size is None:
                raise BadInput(f"{where}: binary_data_size must be a non-negative integer")
            if "data" in tensor:
                raise BadInput(f"{where}: has both 'data' and binary_data_size")
            if size != count * dtype.itemsize:
                raise BadInput(
                    f"{where}: binary_data_size is {size} bytes but shape {list(shape)} of "
                    f"{datatype} needs {count * dtype.itemsize}"
                )
            if offset + size > len(binary):
                raise BadInput(
                    f"{where}: binary data ends at byte {offset + size} after the JSON header, "
                    f"but only {len(binary)} bytes follow it"
                )
            arr = np.frombuffer(binary[offset:offset + size], dtype=dtype).reshape(shape)
            offset += size
        else:
            if "data" not in tensor:
                raise BadInput(f"{where}: needs 'data' (or binary_data_size with binary data)")
            arr = json_numbers(tensor["data"], f"{where} data")
            if arr.size != count:
                raise BadInput(
                    f"{where}: 'data' has {arr.size} values but shape {list(shape)} needs {count}"
                )
            if arr.ndim > 1 and arr.shape != shape:
                raise BadInput(
                    f"{where}: 'data' is nested as {list(arr.shape)}; send it flat (row-major) "
                    f"or nested as the shape {list(shape)}"
                )
            arr = arr.reshape(shape)
        inputs[name] = arr
        datatypes[name] = datatype
    if offset != len(binary):
        raise BadInput(
            f"{len(binary) - offset} bytes of binary data after the JSON header are not claimed "
            "by any input's binary_data_size"
        )

    outputs: list[RequestedOutput] | None = None
    if "outputs" in req:
        raw_outputs = req["outputs"]
        if not isinstance(raw_outputs, list):
            raise BadInput("'outputs' must be a list")
        outputs = []
        for i, out in enumerate(raw_outputs):
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise BadInput(f"outputs[{i}] must be an object with a 'name'")
            oparams = _object(out, "parameters", f"output {out['name']!r}: 'parameters'")
            if any(k.startswith("shared_memory") for k in oparams):
                raise BadInput(f"output {out['name']!r}: shared memory is not supported by this server")
            binary = None
            if "binary_data" in oparams:
                binary = _flag(oparams["binary_data"], f"output {out['name']!r}: binary_data")
            k = _non_negative_int(oparams.get("classification", 0), exact)
            if k is None:
                raise BadInput(f"output {out['name']!r}: classification must be a non-negative integer")
            outputs.append(RequestedOutput(out["name"], binary, k))

    req_id = req.get("id")
    if "id" in req and not isinstance(req_id, str):
        raise BadInput("'id' must be a string")
    return InferRequest(req_id, inputs, datatypes, outputs, binary_output, params)


def _dump_head(head: dict[str, Any]) -> bytes:
    """Compact JSON: orjson when installed (non-ASCII as UTF-8, not ``\\u`` escapes), else the
    stdlib (also for what orjson refuses, such as integers beyond 64 bits)."""
    if jsonbody.orjson is not None:
        try:
            return jsonbody.orjson.dumps(head)
        except TypeError:
            pass
    return json.dumps(head, separators=(",", ":")).encode()


def _bytes_tensor(arr: np.ndarray) -> bytes:
    parts = []
    for item in arr.ravel():
        parts.append(len(item).to_bytes(4, "little"))
        parts.append(item)
    return b"".join(parts)


def encode_infer_response(result: InferResult) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a v2 response."""
    model_name, model_version, request_id = result.model_name, result.model_version, result.request_id
    outputs, parameters = result.outputs, result.parameters
    head: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        head["id"] = request_id
    if parameters:
        head["parameters"] = parameters
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": [int(d) for d in tensor.data.shape],
        }
        if binary:
            if tensor.datatype == "BYTES":
                blob = _bytes_tensor(tensor.data)
            else:
                blob = np.ascontiguousarray(tensor.data, dtype=DTYPES[tensor.datatype]).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif tensor.datatype == "BYTES":
            entry["data"] = [b.decode("utf-8", "replace") for b in tensor.data.ravel()]
        else:
            entry["data"] = tensor.data.ravel().tolist()
        entries.append(entry)
    head["outputs"] = entries
    header = _dump_head(head)
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
