"""A body past HTTP_MAX_BODY_BYTES is refused with 413 while it is read: announced by
Content-Length (answered before any body byte is sent) or streamed chunked (answered once the
limit is passed), in the error shape of the path, and the server keeps answering."""

import json
import socket

import pytest
import requests

from tests.websocket_raw import read_response

LIMIT = 1_048_576
STREAM_MAX = 64 * 2**20
HEAD = "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{length}\r\n"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/predict", {"errors": {"non_field_errors": [f"The body is larger than {LIMIT} bytes."]}}),
        ("/v2/models/diabetes/infer", {"error": f"The body is larger than {LIMIT} bytes."}),
    ],
)
def test_400_mib_content_length_is_refused_before_the_body(daphne, raw_http, path, expected):
    head = HEAD.format(path=path, length=f"Content-Length: {400 * 2**20}\r\n")
    status, headers, body = raw_http(daphne.port, head.encode())
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == expected


def test_html_form_gets_a_plain_413_page(daphne, raw_http):
    head = HEAD.format(path="/assess", length=f"Content-Length: {LIMIT + 1}\r\n")
    status, headers, body = raw_http(daphne.port, head.encode())
    assert status == 413
    assert headers["content-type"].startswith("text/html")
    assert b"larger than" in body


def test_chunked_body_is_refused_once_it_passes_the_limit(daphne):
    sock = socket.create_connection(("127.0.0.1", daphne.port), timeout=30)
    try:
        sock.sendall(HEAD.format(path="/api/v1/predict", length="Transfer-Encoding: chunked\r\n").encode())
        chunk = b"1" * 65536
        sent = 0
        # Stream up to 64 MiB; the answer comes once the limit is passed, long before the end.
        while sent < STREAM_MAX:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break
            sent += len(chunk)
            sock.settimeout(0.0)
            try:
                peek = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                peek = b""
            sock.settimeout(30)
            if peek:
                break
        status, _, body = read_response(sock)
    finally:
        sock.close()
    assert status == 413
    assert b"larger than" in body
    assert sent < STREAM_MAX  # answered while reading, not after the whole stream
    assert requests.get(f"{daphne.http}/v2/health/live", timeout=10).status_code == 200


def test_a_body_within_the_limit_is_still_served(daphne):
    response = requests.post(f"{daphne.http}/api/v1/predict", json={"features": {"glucose": 120}}, timeout=30)
    assert response.status_code == 200, response.text
