"""The Open Inference Protocol (KServe V2) over HTTP (README: "Open Inference Protocol (V2)").

One model, ``diabetes``: input tensor ``features`` (FP64 or FP32, shape ``[N, 8]``, columns in
``FEATURE_KEYS`` order, no missing values), outputs ``risk`` (FP64, ``[N]``) and ``label`` (INT64,
``[N]``). The numbers are those of ``ml_engine.services.predict_risks`` (one vectorised call); V2
predictions are not stored. Tensor data may be JSON (flat row-major or nested) or use the binary
tensor data extension (``Inference-Header-Content-Length``), which tritonclient uses by default.
Every error is ``{"error": "..."}`` with status 400 (404 for an unknown model, 503 without a model).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SynchronousOnlyOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from rest_framework.utils import json as strict_json

from ml_engine.models import Interface
from ml_engine.registry import ModelUnavailable, active_model
from ml_engine.schema import FEATURE_KEYS, FEATURES, Feature, invalid_cells, value_error
from ml_engine.services import MAX_INSTANCES, predict_risks
from project import throttling

from .access import predict_access_error

MODEL_NAME = "diabetes"
SERVER_NAME = "diabetes-risk"
SERVER_VERSION = "1.0.0"
INPUT_NAME = "features"
INPUT_DTYPES: dict[str, np.dtype] = {"FP64": np.dtype("<f8"), "FP32": np.dtype("<f4")}
OUTPUTS: dict[str, tuple[str, np.dtype]] = {"risk": ("FP64", np.dtype("<f8")), "label": ("INT64", np.dtype("<i8"))}
HEADER_LENGTH = "Inference-Header-Content-Length"
COLUMNS = len(FEATURE_KEYS)
_NUMBERS = frozenset({int, float})  # JSON numbers as parsed (bool is a type of its own)


class V2Error(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def _error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def v2_view(*methods: str) -> Callable:
    """Allow only ``methods``; turn V2Error and a missing model into the protocol's error shape.

    The views run on the event loop (no thread per request): they only compute. The one exception
    is the first use of the model in a process, which reads the database: that call is retried
    once in a worker thread (Django refuses database access on the event loop).
    """

    def decorate(view: Callable) -> Callable:
        async def call(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if iscoroutinefunction(view):
                return await view(request, *args, **kwargs)
            return view(request, *args, **kwargs)

        @csrf_exempt
        async def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = _error(f"Method {request.method} is not allowed here; use {' or '.join(methods)}.", 405)
                response["Allow"] = ", ".join(methods)
                return response
            try:
                try:
                    return await call(request, *args, **kwargs)
                except SynchronousOnlyOperation:
                    await sync_to_async(active_model.get)()  # loads it, or raises
                    return await call(request, *args, **kwargs)
            except V2Error as exc:
                return _error(exc.message, exc.status)
            except ModelUnavailable as exc:
                response = _error(str(exc), 503)
                response["Retry-After"] = "5"
                return response

        wrapped.__name__ = view.__name__
        wrapped.__doc__ = view.__doc__
        return wrapped

    return decorate


def _served_version(version: str | None) -> str:
    served = active_model.get()
    if version is not None and version != served.version:
        raise V2Error(
            f"Model {MODEL_NAME} version {version[:64]} is not served; the served version is {served.version}.", 404
        )
    return served.version


@v2_view("GET")
def server_metadata(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]})


@v2_view("GET")
def server_live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"live": True})


@v2_view("GET")
def server_ready(request: HttpRequest) -> JsonResponse:
    try:
        active_model.get()
    except ModelUnavailable as exc:
        return JsonResponse({"ready": False, "error": str(exc)}, status=503)
    return JsonResponse({"ready": True})


@v2_view("GET")
def model_metadata(request: HttpRequest, version: str | None = None) -> JsonResponse:
    served_version = _served_version(version)
    return JsonResponse(
        {
            "name": MODEL_NAME,
            "versions": [served_version],
            "platform": "scikit-learn",
            "inputs": [
                {
                    "name": INPUT_NAME,
                    "datatype": "FP64",
                    "shape": [-1, COLUMNS],
                    "parameters": {
                        "columns": list(FEATURE_KEYS),
                        "ranges": {f.key: [f.min, f.max] for f in FEATURES},
                        "accepted_datatypes": list(INPUT_DTYPES),
                        "max_rows": MAX_INSTANCES,
                    },
                }
            ],
            "outputs": [{"name": name, "datatype": dtype, "shape": [-1]} for name, (dtype, _) in OUTPUTS.items()],
        }
    )


@v2_view("GET")
def model_ready(request: HttpRequest, version: str | None = None) -> JsonResponse:
    try:
        served_version = _served_version(version)
    except ModelUnavailable as exc:
        return JsonResponse({"name": MODEL_NAME, "ready": False, "error": str(exc)}, status=503)
    return JsonResponse({"name": MODEL_NAME, "version": served_version, "ready": True})


@v2_view("GET", "POST")
def unknown_model(request: HttpRequest, name: str, rest: str = "") -> JsonResponse:
    return _error(f"Unknown model {name[:64]!r}; this server serves {MODEL_NAME!r}.", 404)


@never_cache  # risks are health data (README: "Health data")
@v2_view("POST")
async def model_infer(request: HttpRequest, version: str | None = None) -> HttpResponse:
    """Risks and labels for the rows of the ``features`` tensor."""
    refused = None  # README: "Access and roles"; a key is looked up in the database, off the event loop
    if settings.API_REQUIRE_KEY_FOR_PREDICT:
        refused = await sync_to_async(predict_access_error)(request)
    if refused is not None:
        response = _error(refused[1], refused[0])
        if refused[0] == 401:
            response["WWW-Authenticate"] = "Api-Key"
        return response
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise V2Error(f"Content-Encoding {encoding[:32]} is not supported; send the body uncompressed.")
    head, binary = _split_body(request)
    header, strict = _parse_header(head)
    _served_version(version)  # a version in the path that is not served is a 404
    try:
        rows, tensor_datatype = _features_tensor(header, binary)
    except V2Error:
        if strict:
            raise
        # A refusal is worded from the strict parser's reading of the body, exactly as it always
        # was (orjson reads integers past 64 bits as floats, which a message would show).
        header, strict = _strict_header(head), True
        rows, tensor_datatype = _features_tensor(header, binary)
    decision = await throttling.v2_rows.ahit(request.META.get("REMOTE_ADDR") or "", cost=len(rows))
    if not decision.allowed:  # rows per client address (README: "Throttles")
        wait = int(decision.wait + 0.999)
        response = _error(f"Too many rows from this address; try again in {wait} s.", 429)
        response["Retry-After"] = str(wait)
        return response
    try:
        wanted = _requested_outputs(header)
    except V2Error:
        if strict:
            raise
        wanted = _requested_outputs(_strict_header(head))
    # A version named in the path is served as asked; otherwise the canary may answer (README:
    # "Model registry"), and model_version says who did.
    batch = predict_risks(matrix=rows, interface=Interface.V2, canary=version is None)
    values = {"risk": batch.risks, "label": batch.labels}
    outputs, blobs = [], []
    for name, as_binary in wanted:
        datatype, dtype = OUTPUTS[name]
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [len(rows)]}
        if as_binary:
            blob = values[name].astype(dtype, copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = np.ascontiguousarray(values[name])
        outputs.append(tensor)
    body: dict[str, Any] = {"model_name": MODEL_NAME, "model_version": batch.model_version}
    if "id" in header:
        body["id"] = header["id"]
    body["parameters"] = {"input_datatype": tensor_datatype}
    body["outputs"] = outputs
    if not blobs:
        return HttpResponse(_json_bytes(body), content_type="application/json")
    head = _json_bytes(body)
    binary_response = HttpResponse(head + b"".join(blobs), content_type="application/octet-stream")
    binary_response[HEADER_LENGTH] = str(len(head))
    return binary_response


def _json_bytes(body: dict[str, Any]) -> bytes:
    """The reply's JSON, with tensors written straight from their arrays (orjson). An ``id`` that
    is not plain ASCII is written by the standard library instead, which escapes it (a lone
    surrogate a client sent cannot break the reply)."""
    echoed = body.get("id")
    if echoed is None or echoed.isascii():
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    for tensor in body["outputs"]:
        if "data" in tensor:
            tensor["data"] = tensor["data"].tolist()
    return json.dumps(body).encode()


def _split_body(request: HttpRequest) -> tuple[bytes, bytes]:
    """The JSON inference header and the binary tensor data after it (empty when there is none)."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise V2Error(f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.") from None
    length_header = request.headers.get(HEADER_LENGTH)
    if length_header is None:
        return raw, b""
    text = length_header.strip()
    # ASCII digits only ("²".isdigit() is true but int() refuses it), and short enough that
    # int() is cheap: no body is longer than 12 digits of bytes.
    if not (text.isascii() and text.isdigit() and len(text) <= 12) or int(text) > len(raw):
        raise V2Error(f"{HEADER_LENGTH} must be the length of the JSON header within the body.")
    length = int(text)
    return raw[:length], raw[length:]


def _parse_header(head: bytes) -> tuple[dict[str, Any], bool]:
    """The inference header and whether the strict parser read it. orjson (strict JSON, no NaN)
    reads it when it can; whatever orjson refuses is left to the strict parser, which accepts or
    words the refusal as it always did."""
    try:
        header = orjson.loads(head)
    except orjson.JSONDecodeError:
        return _strict_header(head), True
    if not isinstance(header, dict) or ("id" in header and not isinstance(header["id"], str)):
        return _strict_header(head), True
    return header, False


def _strict_header(head: bytes) -> dict[str, Any]:
    try:
        header = strict_json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise V2Error(f"The inference request is not valid JSON: {str(exc)[:120]}.") from None
    if not isinstance(header, dict):
        raise V2Error("The inference request must be a JSON object with an inputs list.")
    if "id" in header and not isinstance(header["id"], str):
        raise V2Error("id must be a string.")
    return header


def _features_tensor(header: dict[str, Any], binary: bytes) -> tuple[np.ndarray, str]:
    """The ``[N, 8]`` float matrix of the request, checked, and the tensor's datatype. Valid
    values cost a few array operations; messages are written only when a value fails."""
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise V2Error(f"inputs must be a list holding exactly one tensor, {INPUT_NAME!r}.")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise V2Error(f"Unknown input {str(tensor.get('name'))[:40]!r}; the only input is {INPUT_NAME!r}.")
    datatype = tensor.get("datatype")
    if datatype not in INPUT_DTYPES:
        raise V2Error(f"{INPUT_NAME} datatype must be FP64 or FP32; got {str(datatype)[:16]}.")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1] != COLUMNS
        or not 1 <= shape[0] <= MAX_INSTANCES
    ):
        raise V2Error(
            f"{INPUT_NAME} shape must be [N, {COLUMNS}] with N from 1 to {MAX_INSTANCES} "
            f"(columns: {', '.join(FEATURE_KEYS)}); got {str(shape)[:40]}."
        )
    n = shape[0]
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise V2Error(f"{INPUT_NAME} parameters must be an object.")
    matrix: np.ndarray | None = None
    if "binary_data_size" in parameters:
        matrix = _binary_values(parameters["binary_data_size"], binary, INPUT_DTYPES[datatype], n)
        if "data" in tensor:
            raise V2Error(f"{INPUT_NAME} has both data and binary_data_size; send one.")
        values: list[Any] | None = None
    else:
        if binary:
            raise V2Error("Binary data was sent but no input declares binary_data_size.")
        if "data" not in tensor:
            raise V2Error(f"{INPUT_NAME} has no data.")
        values = _json_values(tensor["data"], n)
        if _NUMBERS.issuperset(map(type, values)):
            try:
                matrix = np.array(values, dtype=float)
            except OverflowError:  # an integer too large for a float: described below
                matrix = None
    if matrix is None or len(invalid_cells(matrix.reshape(n, COLUMNS), allow_missing=False)):
        raise V2Error(_problems(values if values is not None else matrix.tolist(), n))  # type: ignore[union-attr]
    matrix = matrix.reshape(n, COLUMNS)
    if datatype == "FP32" and "binary_data_size" not in parameters:
        # JSON numbers of an FP32 tensor mean what the same binary tensor would: round to float32.
        matrix = matrix.astype(np.float32).astype(float)
    return matrix, datatype


def _problems(values: list[Any], n: int) -> str:
    """What is wrong with the values of a refused tensor: at most ten cells, row by row."""
    problems = []
    for i in range(n):
        row = values[i * COLUMNS : (i + 1) * COLUMNS]
        for column, (feature, value) in enumerate(zip(FEATURES, row, strict=True)):
            problem = _value_problem(feature, value)
            if problem:
                problems.append(f"{INPUT_NAME}[{i}, {column}] ({feature.key}): {problem}")
        if len(problems) >= 10:
            break
    return "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else "")


def _value_problem(feature: Feature, value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (
            f"{feature.label} is missing; V2 needs every value "
            f"({feature.range_text}); the REST API imputes missing ones."
        )
    return value_error(feature, value)


def _binary_values(size: Any, binary: bytes, dtype: np.dtype, n: int) -> np.ndarray:
    expected = n * COLUMNS * dtype.itemsize
    if not isinstance(size, int) or isinstance(size, bool) or size != expected or len(binary) != expected:
        raise V2Error(
            f"{INPUT_NAME} binary_data_size must be {expected} bytes for shape [{n}, {COLUMNS}] "
            f"and match the binary data sent ({len(binary)} bytes)."
        )
    return np.frombuffer(binary, dtype=dtype).astype(float)


def _json_values(data: Any, n: int) -> list[Any]:
    """Row-major values from flat data (length N*8) or nested data ([N][8])."""
    if not isinstance(data, list):
        raise V2Error(f"{INPUT_NAME} data must be a list.")
    if len(data) == n * COLUMNS and list not in set(map(type, data)):
        return data
    if len(data) == n and all(type(row) is list and len(row) == COLUMNS for row in data):
        flat = [v for row in data for v in row]
        if list not in set(map(type, flat)):
            return flat
    raise V2Error(
        f"{INPUT_NAME} data must hold {n * COLUMNS} numbers for shape [{n}, {COLUMNS}], "
        f"flat (row-major) or as {n} rows of {COLUMNS}."
    )


def _requested_outputs(header: dict[str, Any]) -> list[tuple[str, bool]]:
    """(output name, as binary) in the order asked for; both outputs when none are named."""
    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise V2Error("parameters must be an object.")
    default_binary = parameters.get("binary_data_output") is True
    requested = header.get("outputs")
    if requested is None:
        return [(name, default_binary) for name in OUTPUTS]
    if not isinstance(requested, list) or not requested:
        raise V2Error(f"outputs must be a non-empty list of {', '.join(OUTPUTS)}.")
    wanted: list[tuple[str, bool]] = []
    for output in requested:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in OUTPUTS:
            raise V2Error(f"Unknown output {str(name)[:40]!r}; the outputs are {', '.join(OUTPUTS)}.")
        if any(name == seen for seen, _ in wanted):
            raise V2Error(f"Output {name} is requested twice.")
        output_parameters = output.get("parameters") or {}
        if not isinstance(output_parameters, dict):
            raise V2Error(f"Output {name} parameters must be an object.")
        as_binary = output_parameters.get("binary_data", default_binary) is True
        wanted.append((name, as_binary))
    return wanted
