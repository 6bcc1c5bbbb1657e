"""The deployment files: docker compose stack, Dockerfile and production settings."""

import ast
import ipaddress
import json
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


OFFICIAL_IMAGES = {
    "PYTHON_IMAGE": "python:3.11-slim",
    "REDIS_IMAGE": "redis:7-alpine",
    "POSTGRES_IMAGE": "postgres:16-alpine",
    "PROXY_IMAGE": "nginx:1.27-alpine",
}


def test_compose_has_proxy_web_migrate_redis_and_db_with_health_checks(compose):
    services = compose["services"]
    assert set(services) == {"proxy", "web", "migrate", "redis", "db"}
    assert "name" not in compose, "Compose v1 rejects a top-level name: (use COMPOSE_PROJECT_NAME)"
    for name in ("web", "redis", "db"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert services["migrate"]["healthcheck"] == {"disable": True}
    depends = services["web"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    assert services["web"]["build"]["context"] == "." and services["migrate"]["build"] == services["web"]["build"]


def test_only_the_proxy_is_published_and_on_loopback(compose):
    services = compose["services"]
    assert services["proxy"]["ports"] == ["127.0.0.1:${PROXY_PORT:-8000}:80"]
    assert [name for name, service in services.items() if "ports" in service] == ["proxy"]
    # The proxy's fixed address lies in the stack's subnet (both variables, with defaults).
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    address = services["proxy"]["networks"]["default"]["ipv4_address"]
    assert ipaddress.ip_address(variable_default(address)) in ipaddress.ip_network(variable_default(subnet))
    # ... and is the only peer the web replicas believe X-Forwarded-For from.
    assert services["web"]["environment"]["DJANGO_TRUSTED_PROXIES"] == address


def variable_default(value: str) -> str:
    """The default of a `${NAME:-default}` compose variable."""
    match = re.fullmatch(r"\$\{\w+:-(.+)\}", value)
    assert match is not None, f"{value!r} is not ${{NAME:-default}}"
    return match.group(1)


def test_base_images_are_variables_defaulting_to_the_official_images(compose):
    services = compose["services"]
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7-alpine}"
    assert services["db"]["image"] == "${POSTGRES_IMAGE:-postgres:16-alpine}"
    assert services["web"]["build"]["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim}"
    assert services["proxy"]["build"]["args"]["PROXY_IMAGE"] == "${PROXY_IMAGE:-nginx:1.27-alpine}"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in (ROOT / "Dockerfile").read_text()
    assert "ARG PROXY_IMAGE=nginx:1.27-alpine" in (ROOT / "docker" / "proxy" / "Dockerfile").read_text()


def test_proxy_sets_the_client_address_and_keeps_websockets(compose):
    conf = (ROOT / "docker" / "proxy" / "default.conf").read_text()
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf  # overwritten, never appended
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "resolver 127.0.0.11" in conf and "proxy_pass $web_upstream;" in conf
    assert re.search(r"proxy_read_timeout \d+h;", conf) and re.search(r"client_max_body_size \d+m;", conf)


def test_web_environment_is_what_the_settings_read(compose):
    web_env = compose["services"]["web"]["environment"]
    unknown = set(web_env) - settings_variables()
    assert not unknown, f"compose sets variables the project never reads: {unknown}"
    assert web_env["DJANGO_DEBUG"] == "0"
    assert web_env["REDIS_URL"].startswith("redis://redis:6379")
    # Required, never defaulted: a stack must not start with a known key or password.
    assert web_env["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
    password = re.fullmatch(
        r"postgres://diabetes:(\$\{POSTGRES_PASSWORD:\?[^}]*\})@db:5432/diabetes", web_env["DATABASE_URL"]
    )
    assert password
    db = compose["services"]["db"]["environment"]
    assert db["POSTGRES_PASSWORD"] == password.group(1)
    url = web_env["DATABASE_URL"].replace(password.group(1), "secret")
    assert url == f"postgres://{db['POSTGRES_USER']}:secret@db:5432/{db['POSTGRES_DB']}"
    import dj_database_url

    parsed = dj_database_url.parse(url)
    assert parsed["ENGINE"] == "django.db.backends.postgresql" and parsed["HOST"] == "db"


def test_migrate_runs_once_before_daphne(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}", dockerfile, re.M)
    assert "ARG REQUIREMENTS=requirements.txt" in dockerfile
    assert "pip install --no-cache-dir -r ${REQUIREMENTS}" in dockerfile
    assert "collectstatic" in dockerfile
    cmd = re.search(r"^CMD (\[.*?\])\s*$", dockerfile, re.M | re.S).group(1)
    argv = json.loads(cmd.replace("\\\n", ""))
    assert argv[:3] == ["python", "-m", "project.serve"] and argv[-1] == "asgi:application"
    migrate = " ".join(compose["services"]["migrate"]["command"])
    assert "manage.py migrate" in migrate and "manage.py ensure_model" in migrate
    # every management command the stack runs exists
    commands = ROOT / "ml_engine" / "management" / "commands"
    assert (commands / "ensure_model.py").exists()


def test_dev_override_reloads_with_the_source_mounted():
    dev = yaml.safe_load((ROOT / "docker-compose.dev.yml").read_text())
    web = dev["services"]["web"]
    assert web["environment"]["DJANGO_DEBUG"] == "1"
    assert ".:/app:ro" in web["volumes"]
    assert web["command"][0] == "watchfiles" and "project.serve" in " ".join(web["command"])
    assert re.search(r"^watchfiles==", (ROOT / "requirements-dev.txt").read_text(), re.M)


def test_image_and_dev_override_run_daphne_as_make_run_does():
    """`python -m project.serve` applies the production options itself; the image adds only the address."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    argv = json.loads(re.search(r"^CMD (\[.*?\])\s*$", dockerfile, re.M | re.S).group(1))
    serve = ["python", "-m", "project.serve", "-b", "0.0.0.0", "-p", "8000"]
    assert argv == [*serve, "asgi:application"]  # no --proxy-headers: see project/proxy.py
    dev = yaml.safe_load((ROOT / "docker-compose.dev.yml").read_text())["services"]["web"]["command"]
    assert " ".join(argv) in dev


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
