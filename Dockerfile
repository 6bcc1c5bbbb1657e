# The web image: daphne serving the Django project. Built by docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_DIR=/var/lib/diabetes/models

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Hashed, compressed static files for whitenoise; the key only exists for this build step.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input -v0 \
    && useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /var/lib/diabetes/models \
    && chown -R app /var/lib/diabetes

USER app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
ENTRYPOINT ["sh", "docker/entrypoint.sh"]
# `python -m project.serve` is daphne with 1009 closes for oversized frames (project/serve.py).
CMD ["python", "-m", "project.serve", "-b", "0.0.0.0", "-p", "8000", "--websocket_timeout", "-1", \
     "--websocket_connect_timeout", "10", "--ping-interval", "20", "--ping-timeout", "30", \
     "--application-close-timeout", "10", "--websocket-max-message-size", "65536", \
     "--websocket-max-frame-size", "65536", "--proxy-headers", "asgi:application"]
