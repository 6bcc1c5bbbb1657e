#!/bin/sh
# Start-up of a web container: migrate and train a model if none is active, then run the CMD.
# Several replicas share the model volume; the lock there makes them take turns, so only the
# first one migrates and trains.
set -eu
state=/var/lib/diabetes
if [ -z "${DJANGO_SECRET_KEY:-}" ]; then
  # No key given: make one on first start and keep it in the shared volume, so every replica
  # (and the next start) signs sessions and CSRF tokens with the same key.
  if [ ! -s "$state/secret_key" ]; then
    umask 077
    python -c "import secrets; print(secrets.token_urlsafe(50))" > "$state/secret_key.tmp"
    mv "$state/secret_key.tmp" "$state/secret_key"
  fi
  DJANGO_SECRET_KEY=$(cat "$state/secret_key")
  export DJANGO_SECRET_KEY
fi
flock "$state/setup.lock" sh -c 'python manage.py migrate --no-input -v1 && python manage.py ensure_model'
exec "$@"
