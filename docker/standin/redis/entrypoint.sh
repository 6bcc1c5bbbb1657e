#!/bin/sh
# As the official image: without a config file, protected mode is off (the container network is
# the boundary), so other containers may connect.
set -e
if [ "${1:-}" = redis-server ]; then
  case "${2:-}" in *.conf) ;; *) set -- "$@" --protected-mode no ;; esac
fi
exec "$@"
