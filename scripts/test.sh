#!/usr/bin/env bash
# The README's test command: installs everything the suite needs, then runs it.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[all]'

# promtool (Prometheus rule checks and unit tests) from Debian's package
if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends prometheus >/dev/null) || echo "warning: could not install promtool"
  fi
fi

# PostgreSQL at 127.0.0.1:5432 (started before the session on these machines; start it if down)
if command -v pg_ctlcluster >/dev/null 2>&1; then
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 20); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
  fi
fi

export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.itdr/numba-cache}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
