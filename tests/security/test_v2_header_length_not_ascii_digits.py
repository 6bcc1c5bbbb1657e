"""``Inference-Header-Content-Length`` of ``²``, ``¹`` (``str.isdigit`` says yes, ``int`` says no)
or 5,000 digits: a V2 400 ``{"error": ...}``, never a 500."""

import json

import pytest

BODY = b'{"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "data": [1,100,70,20,80,30,0.5,40]}]}'


@pytest.mark.parametrize("value", [b"\xb2", b"\xb9", b"9" * 5000, b"-1", b"1e3"])
def test_header_length_is_refused_with_400(daphne, raw_http, value):
    request = (
        b"POST /v2/models/diabetes/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Inference-Header-Content-Length: " + value + b"\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
    )
    status, headers, body = raw_http(daphne.port, request)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert "Inference-Header-Content-Length" in json.loads(body)["error"]
