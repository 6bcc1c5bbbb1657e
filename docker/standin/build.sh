#!/usr/bin/env bash
# Builds stand-ins for the official base images from Debian packages, for machines that cannot
# pull from an image registry (README: "Compose without registry access").
#
# A bookworm root file system is made with debootstrap from the Debian mirror this machine's apt
# is configured with, imported as standin/debian:bookworm, and four small images are built on it.
# Each honours the environment and commands the compose file uses with the official image:
#
#   standin/python:3.11-bookworm    for python:3.11-slim   (python, pip on PATH)
#   standin/redis:7-bookworm        for redis:7-alpine     (redis-server args, redis-cli)
#   standin/postgres:15-bookworm    for postgres:16-alpine (POSTGRES_DB/USER/PASSWORD, PGDATA,
#                                                           pg_isready)
#   standin/nginx:1.22-bookworm     for nginx:1.27-alpine  (/etc/nginx/conf.d/*.conf, nginx -g)
#
# The versions are Debian bookworm's. An image that already exists is not built again; set
# STANDIN_REBUILD=1 to rebuild all of them. Prints the variables that select the stand-ins.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rebuild=${STANDIN_REBUILD:-0}

exists() { [ "$rebuild" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# The first Debian mirror apt uses here (deb822 .sources or one-line .list files).
mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {print $2}' | grep -v -- '-security' | grep -i debian | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
          | grep -v -- '-security' | head -n 1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

if ! exists standin/debian:bookworm; then
  command -v debootstrap >/dev/null || { echo "debootstrap is required (apt-get install debootstrap)" >&2; exit 1; }
  url=$(mirror)
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  echo "standin: debootstrap bookworm from $url"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$url" >/dev/null
  # The same mirror inside the images, and no apt caches or documentation.
  echo "deb $url bookworm main" > "$root/etc/apt/sources.list"
  printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n' \
    > "$root/etc/dpkg/dpkg.cfg.d/standin-nodoc"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # This machine's CA bundle: package and PyPI downloads inside builds may pass a TLS proxy.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    -c 'CMD ["bash"]' - standin/debian:bookworm >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

for name in python:3.11-bookworm redis:7-bookworm postgres:15-bookworm nginx:1.22-bookworm; do
  image=standin/$name
  if ! exists "$image"; then
    echo "standin: building $image"
    # Host networking: the build's apt and pip reach the mirror and PyPI the way this machine does.
    docker build -q --network host -t "$image" "$here/${name%%:*}" >/dev/null
  fi
done

cat <<VARS
PYTHON_IMAGE=standin/python:3.11-bookworm
REDIS_IMAGE=standin/redis:7-bookworm
POSTGRES_IMAGE=standin/postgres:15-bookworm
PROXY_IMAGE=standin/nginx:1.22-bookworm
VARS
