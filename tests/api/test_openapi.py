"""Schemathesis against the published OpenAPI document of a real daphne: no 5xx, every response
conforms to the schema (status codes and bodies as declared), and the schema is exact: what it
allows is accepted and what it forbids is refused with a 4xx."""

import json
import subprocess
import sys

import pytest

from tests.servers import daphne_servers

CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
)
MAX_EXAMPLES = 100  # per operation and phase; about 10 s on a laptop, bounded to 2 minutes below


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(server_env, tmp_path):
    pytest.importorskip("schemathesis")
    server_env.extra["API_THROTTLE_ANON"] = ""  # fuzzing is a flood; the throttle has its own test
    report = tmp_path / "schemathesis.json"
    with daphne_servers(server_env, 1) as (server,):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{server.http}/api/schema/",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                "20240501",
                "--request-timeout",
                "20",
                "--no-color",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        log = server.log()
    summary = json.loads(report.read_text())
    cases = summary["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {cases['with_failures']} with failures")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert summary["complete"] and not summary["failures"] and not summary["errors"]
    assert cases["generated"] >= 100 and cases["with_failures"] == 0 and cases["errored"] == 0
    assert summary["operations"]["tested"] == 4  # predict, model, outcome POST and PUT
    assert "Traceback" not in log and '" 500 ' not in log


def test_the_outcome_endpoint_documents_its_security_schemes(client, db):
    schema = client.get("/api/schema/?format=json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "Authorization"}
    assert schemes["staffSession"]["in"] == "cookie"
    outcome = schema["paths"]["/api/v1/assessments/{assessment_id}/outcome"]
    assert {"apiKey": []} in outcome["post"]["security"] and {"staffSession": []} in outcome["post"]["security"]
    assert {"401", "403", "404", "409"} <= set(outcome["post"]["responses"])
    assert outcome["post"]["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    # predictions stay open by default: no security requirement, or an empty one
    assert schema["paths"]["/api/v1/predict"]["post"].get("security", [{}]) in ([{}], [])
