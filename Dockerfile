# The web image: daphne serving the Django project. Built by docker-compose.yml, which runs it as
# the one-shot `migrate` service and as the `web` replicas behind the proxy.
# PYTHON_IMAGE selects the base (default: the official image); REQUIREMENTS=requirements-dev.txt
# adds the development tools (docker-compose.dev.yml).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_DIR=/var/lib/diabetes/models

WORKDIR /app
ARG REQUIREMENTS=requirements.txt
COPY requirements.txt requirements-dev.txt ./
RUN pip install --no-cache-dir -r ${REQUIREMENTS}

COPY . .
# Hashed, compressed static files for whitenoise; the key only exists for this build step.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v0 \
    && useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /var/lib/diabetes/models \
    && chown -R app /var/lib/diabetes

USER app
EXPOSE 8000
# docker-compose.yml repeats this with a longer start period for the first start.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=3).status != 200)"
# `python -m project.serve` is daphne with the production options (project/serve.py). No
# --proxy-headers: X-Forwarded-For is read only from DJANGO_TRUSTED_PROXIES (project/proxy.py).
CMD ["python", "-m", "project.serve", "-b", "0.0.0.0", "-p", "8000", "asgi:application"]
