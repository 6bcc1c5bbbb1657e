"""The deployment files: docker compose stack, Dockerfile and production settings."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def settings_variables() -> set[str]:
    """Every environment variable project/settings.py reads."""
    source = (ROOT / "project" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', source))
    names |= set(re.findall(r'env="([A-Z][A-Z0-9_]+)"', source))
    return names


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_settings_reader_finds_the_documented_variables():
    names = settings_variables()
    for name in ("DJANGO_DEBUG", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "MODEL_DIR"):
        assert name in names
    readme = (ROOT / "README.md").read_text()
    undocumented = sorted(n for n in names if f"`{n}`" not in readme)
    assert not undocumented, f"README does not document {undocumented}"


def test_compose_has_web_redis_and_db_with_health_checks(compose):
    services = compose["services"]
    assert set(services) >= {"web", "redis", "db"}
    for name in ("web", "redis", "db"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    depends = services["web"]["depends_on"]
    assert depends["db"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"
    assert services["web"]["build"] == "."
    assert any(str(v).startswith("models:") for v in services["web"]["volumes"])
    assert "models" in compose["volumes"]


def test_web_environment_is_what_the_settings_read(compose):
    web_env = compose["services"]["web"]["environment"]
    unknown = set(web_env) - settings_variables()
    assert not unknown, f"compose sets variables the project never reads: {unknown}"
    assert web_env["DJANGO_DEBUG"] == "0"
    assert web_env["REDIS_URL"].startswith("redis://redis:6379")
    db = compose["services"]["db"]["environment"]
    url = web_env["DATABASE_URL"].replace("${POSTGRES_PASSWORD:-diabetes}", "diabetes")
    assert url == f"postgres://{db['POSTGRES_USER']}:diabetes@db:5432/{db['POSTGRES_DB']}"
    assert "${POSTGRES_PASSWORD:-diabetes}" in web_env["DATABASE_URL"]
    import dj_database_url

    parsed = dj_database_url.parse(url)
    assert parsed["ENGINE"] == "django.db.backends.postgresql" and parsed["HOST"] == "db"


def test_web_command_runs_daphne_after_migrate_and_train_if_missing():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert "collectstatic" in dockerfile
    cmd = re.search(r"^CMD (\[.*?\])\s*$", dockerfile, re.M | re.S).group(1)
    import json

    argv = json.loads(cmd.replace("\\\n", ""))
    assert argv[:3] == ["python", "-m", "project.serve"] and argv[-1] == "asgi:application"
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "manage.py migrate" in entrypoint and "manage.py ensure_model" in entrypoint
    assert 'exec "$@"' in entrypoint
    # every management command the stack runs exists
    commands = ROOT / "ml_engine" / "management" / "commands"
    assert (commands / "ensure_model.py").exists()


def test_compose_daphne_flags_match_make_run():
    makefile = (ROOT / "Makefile").read_text()
    flags = re.search(r"^DAPHNE_FLAGS \?=(.*)$", makefile, re.M).group(1).split()
    dockerfile = (ROOT / "Dockerfile").read_text()
    for flag in flags:
        assert f'"{flag}"' in dockerfile


def _manage(*args, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_check_deploy_is_clean_in_production():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="a-long-random-production-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


SECURITY = (
    "from django.conf import settings as s; "
    "print(repr((s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER)))"
)


def _security_settings(**env) -> tuple:
    result = _manage("shell", "-c", SECURITY, DJANGO_SECRET_KEY="a-long-random-production-key-0123456789-abc", **env)
    assert result.returncode == 0, result.stderr
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_security_settings_are_secure_by_default_and_configurable_from_the_environment():
    assert _security_settings() == (True, True, 31536000, None)
    assert _security_settings(
        DJANGO_SESSION_COOKIE_SECURE="0",
        DJANGO_CSRF_COOKIE_SECURE="0",
        DJANGO_SECURE_HSTS_SECONDS="60",
        DJANGO_SECURE_PROXY_SSL_HEADER="1",
    ) == (False, False, 60, ("HTTP_X_FORWARDED_PROTO", "https"))
