"""Open Inference Protocol V2: hand-made JSON in process, and the real tritonclient over daphne."""

import json
import urllib.request

import numpy as np
import pytest

from ml_engine.models import Assessment, Interface, ModelVersion
from ml_engine.registry import active_model
from ml_engine.schema import FEATURE_KEYS
from ml_engine.services import MAX_INSTANCES, predict
from tests.servers import daphne_servers

INFER = "/v2/models/diabetes/infer"
ROWS = [
    [2, 148, 72, 35, 120, 33.6, 0.627, 50],
    [1, 85, 66, 29, 94, 26.6, 0.351, 31],
    [8, 183, 64, 23, 150, 23.3, 0.672, 32],
    [0, 137, 40, 35, 168, 43.1, 2.288, 33],
]


def infer(client, body, **extra):
    return client.post(INFER, data=json.dumps(body), content_type="application/json", **extra)


def request_for(rows, datatype="FP64", nested=False, **extra):
    data = rows if nested else [v for row in rows for v in row]
    return {"inputs": [{"name": "features", "datatype": datatype, "shape": [len(rows), 8], "data": data}], **extra}


def rest_risks(rows):
    return [predict(features=dict(zip(FEATURE_KEYS, row, strict=True)), interface=Interface.REST).risk for row in rows]


def post_json(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def assert_v2_error(response, status=400):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]
    return body["error"]


def test_health_and_metadata(client, served_model):
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2").json()["name"]
    meta = client.get("/v2/models/diabetes").json()
    assert meta["name"] == "diabetes" and meta["versions"] == [served_model.version]
    assert meta["inputs"][0] | {"parameters": None} == {
        "name": "features",
        "datatype": "FP64",
        "shape": [-1, 8],
        "parameters": None,
    }
    assert meta["inputs"][0]["parameters"]["columns"] == list(FEATURE_KEYS)
    assert meta["outputs"] == [
        {"name": "risk", "datatype": "FP64", "shape": [-1]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    ]
    ready = client.get("/v2/models/diabetes/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert client.get(f"/v2/models/diabetes/versions/{served_model.version}/ready").status_code == 200
    assert_v2_error(client.get("/v2/models/diabetes/versions/nope/ready"), status=404)
    assert_v2_error(client.get("/v2/models/other"), status=404)
    assert_v2_error(client.get("/v2/models/other/infer"), status=404)


@pytest.mark.parametrize("nested", [False, True])
def test_infer_matches_rest_and_stores_nothing(client, served_model, nested):
    response = infer(client, request_for(ROWS, nested=nested, id="req-7"))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "req-7" and body["model_name"] == "diabetes" and body["model_version"] == served_model.version
    risk, label = body["outputs"]
    assert risk["name"] == "risk" and risk["datatype"] == "FP64" and risk["shape"] == [4]
    assert label["name"] == "label" and label["datatype"] == "INT64" and label["shape"] == [4]
    assert risk["data"] == pytest.approx(rest_risks(ROWS), abs=1e-9, rel=0)
    assert label["data"] == [int(r >= served_model.threshold) for r in risk["data"]]
    assert not Assessment.objects.exists()


def test_fp32_is_accepted(client, served_model):
    body = infer(client, request_for(ROWS, datatype="FP32")).json()
    as_fp32 = [[float(np.float32(v)) for v in row] for row in ROWS]
    assert body["outputs"][0]["data"] == pytest.approx(rest_risks(as_fp32), abs=1e-9, rel=0)


def test_requested_outputs_are_honoured(client, served_model):
    body = infer(client, request_for(ROWS, outputs=[{"name": "label"}])).json()
    assert [o["name"] for o in body["outputs"]] == ["label"]


def test_binary_tensor_extension(client, served_model):
    """What tritonclient sends by default: binary input after the JSON header, binary outputs back."""
    array = np.array(ROWS, dtype="<f8")
    header = json.dumps(
        {
            "inputs": [
                {"name": "features", "datatype": "FP64", "shape": [4, 8], "parameters": {"binary_data_size": 256}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    response = client.post(
        INFER,
        data=header + array.tobytes(),
        content_type="application/octet-stream",
        HTTP_INFERENCE_HEADER_CONTENT_LENGTH=str(len(header)),
    )
    assert response.status_code == 200
    length = int(response["Inference-Header-Content-Length"])
    head = json.loads(response.content[:length])
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [32, 32]
    risks = np.frombuffer(response.content[length : length + 32], dtype="<f8")
    labels = np.frombuffer(response.content[length + 32 :], dtype="<i8")
    assert list(risks) == pytest.approx(rest_risks(ROWS), abs=1e-9, rel=0)
    assert list(labels) == [int(r >= served_model.threshold) for r in risks]


BAD = {"name": "features", "datatype": "FP64", "shape": [1, 8]}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": [{**BAD, "data": [2, 900, 72, 35, 120, 33.6, 0.627, 50]}]}, "features[0, 1] (glucose)"),
        ({"inputs": [{**BAD, "data": [2, 900, 72, 35, 120, 33.6, 0.627, 50]}]}, "from 20 to 600 mg/dL"),
        ({"inputs": [{**BAD, "data": [2, 148, 72, 35, 120, 33.6, 0.627, 50.5]}]}, "features[0, 7] (age)"),
        ({"inputs": [{**BAD, "data": [2, 148, None, 35, 120, 33.6, 0.627, 50]}]}, "is missing"),
        ({"inputs": [{**BAD, "data": [2, "148", 72, 35, 120, 33.6, 0.627, 50]}]}, "got a string"),
        ({"inputs": [{**BAD, "data": [2, True, 72, 35, 120, 33.6, 0.627, 50]}]}, "got a boolean"),
        ({"inputs": [{**BAD, "data": [2, 148, 72]}]}, "must hold 8 numbers"),
        ({"inputs": [{**BAD, "data": [[2, 148, 72, 35, 120, 33.6, 0.627]]}]}, "must hold 8 numbers"),
        ({"inputs": [{**BAD, "shape": [1, 7], "data": [2, 148, 72, 35, 120, 33.6, 0.627]}]}, "shape must be [N, 8]"),
        ({"inputs": [{**BAD, "shape": [0, 8], "data": []}]}, "shape must be [N, 8]"),
        ({"inputs": [{**BAD, "shape": [MAX_INSTANCES + 1, 8], "data": []}]}, "N from 1 to 1000"),
        ({"inputs": [{**BAD, "shape": [True, 8], "data": []}]}, "shape must be"),
        ({"inputs": [{**BAD, "datatype": "INT64", "data": [0] * 8}]}, "FP64 or FP32"),
        ({"inputs": [{**BAD, "name": "x", "data": [0] * 8}]}, "Unknown input"),
        ({"inputs": [{**BAD}]}, "has no data"),
        ({"inputs": []}, "exactly one tensor"),
        ({"inputs": "features"}, "exactly one tensor"),
        ({}, "exactly one tensor"),
        ([1, 2], "JSON object"),
        ({"inputs": [{**BAD, "data": [2, 148, 72, 35, 120, 33.6, 0.627, 50]}], "outputs": [{"name": "x"}]}, "output"),
        ({"inputs": [{**BAD, "data": [2, 148, 72, 35, 120, 33.6, 0.627, 50]}], "id": 5}, "id must be a string"),
    ],
)
def test_invalid_requests_are_400_naming_the_problem(client, served_model, body, fragment):
    assert fragment in assert_v2_error(infer(client, body))


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        ("{not json", {}),
        ('{"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "data": [NaN]}]}', {}),
        ("{}", {"HTTP_INFERENCE_HEADER_CONTENT_LENGTH": "999"}),
        ("{}", {"HTTP_INFERENCE_HEADER_CONTENT_LENGTH": "-1"}),
        ("{}abc", {"HTTP_INFERENCE_HEADER_CONTENT_LENGTH": "2"}),
        ("{}", {"HTTP_CONTENT_ENCODING": "gzip"}),
    ],
)
def test_malformed_bodies_are_400(client, served_model, raw, headers):
    assert_v2_error(client.post(INFER, data=raw, content_type="application/json", **headers))


def test_a_body_past_the_upload_limit_is_400(client, served_model, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    rows = ROWS * 10
    assert "larger than 1000 bytes" in assert_v2_error(infer(client, request_for(rows)))


def test_binary_size_must_match(client, served_model):
    header = json.dumps(
        {"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "parameters": {"binary_data_size": 64}}]}
    ).encode()
    response = client.post(
        INFER,
        data=header + b"\x00" * 32,
        content_type="application/octet-stream",
        HTTP_INFERENCE_HEADER_CONTENT_LENGTH=str(len(header)),
    )
    assert "binary_data_size" in assert_v2_error(response)


def test_wrong_method_is_405(client, served_model):
    assert_v2_error(client.get(INFER), status=405)


def test_no_model_is_503(client, served_model):
    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    try:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/diabetes/ready").status_code == 503
        assert "No model" in assert_v2_error(infer(client, request_for(ROWS)), status=503)
    finally:
        active_model.reset()


@pytest.mark.slow
def test_tritonclient_against_daphne(server_env):
    httpclient = pytest.importorskip("tritonclient.http")
    with daphne_servers(server_env, 1) as (server,):
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("diabetes")
        metadata = client.get_model_metadata("diabetes")
        assert metadata["inputs"][0]["shape"] == [-1, 8]
        assert client.get_server_metadata()["name"]

        rows = ROWS + [[3, 120 + i, 70, 30, 100, 30.0 + i / 10, 0.5, 40 + i] for i in range(20)]
        rest = post_json(
            f"{server.http}/api/v1/predict", {"instances": [dict(zip(FEATURE_KEYS, row, strict=True)) for row in rows]}
        )["predictions"]
        rest_risk = [p["risk"] for p in rest]
        rest_label = [p["label"] for p in rest]

        # JSON tensors both ways.
        features = httpclient.InferInput("features", [len(rows), 8], "FP64")
        features.set_data_from_numpy(np.array(rows, dtype=np.float64), binary_data=False)
        outputs = [
            httpclient.InferRequestedOutput("risk", binary_data=False),
            httpclient.InferRequestedOutput("label", binary_data=False),
        ]
        result = client.infer("diabetes", [features], outputs=outputs, request_id="abc")
        assert result.get_response()["id"] == "abc"
        assert result.as_numpy("risk").shape == (len(rows),)
        np.testing.assert_allclose(result.as_numpy("risk"), rest_risk, rtol=0, atol=1e-9)
        assert result.as_numpy("label").tolist() == rest_label

        # The client's defaults: binary tensor data in and out.
        features = httpclient.InferInput("features", [len(rows), 8], "FP64")
        features.set_data_from_numpy(np.array(rows, dtype=np.float64))
        result = client.infer("diabetes", [features])
        np.testing.assert_allclose(result.as_numpy("risk"), rest_risk, rtol=0, atol=1e-9)
        assert result.as_numpy("label").dtype == np.int64 and result.as_numpy("label").tolist() == rest_label

        # FP32 is accepted too.
        features = httpclient.InferInput("features", [len(rows), 8], "FP32")
        features.set_data_from_numpy(np.array(rows, dtype=np.float32))
        fp32 = client.infer("diabetes", [features]).as_numpy("risk")
        np.testing.assert_allclose(fp32, rest_risk, rtol=0, atol=1e-4)

        # A bad value is a clear 400, raised by the client as an InferenceServerException.
        from tritonclient.utils import InferenceServerException

        bad = np.array([[2, 900, 72, 35, 120, 33.6, 0.627, 50]], dtype=np.float64)
        features = httpclient.InferInput("features", [1, 8], "FP64")
        features.set_data_from_numpy(bad, binary_data=False)
        with pytest.raises(InferenceServerException, match=r"features\[0, 1\] \(glucose\).*20 to 600 mg/dL"):
            client.infer("diabetes", [features])
        client.close()
    assert "Traceback" not in server.log()
