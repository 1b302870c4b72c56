#!/usr/bin/env bash
# Twinsite's one entry point. On a fresh machine:
#   ./twinsite.sh start   install everything, migrate, start web + workers on http://127.0.0.1:8000
#   ./twinsite.sh test    install everything (plus test tools and Chromium) and run the whole test suite
# Other subcommands: setup, web, worker [default|gpu], manage <args>.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="${TWINSITE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

log() { printf '\033[1m[twinsite]\033[0m %s\n' "$*" >&2; }

find_python() {
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$candidate"; return 0
    fi
  done
  log "Python 3.11 is required (python3.11 or python3 must be 3.11)."; exit 1
}

# Install (or update) the virtualenv when the requirement files changed since the last install.
setup_python() {
  local reqs="$1" stamp
  if [ ! -x "$PY" ]; then
    log "creating virtualenv in $VENV"
    "$(find_python)" -m venv "$VENV"
  fi
  stamp="$VENV/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$reqs")"
  if [ ! -f "$stamp" ]; then
    log "installing $reqs (the first run takes a few minutes)"
    "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    touch "$stamp"
  fi
}

setup_chromium() {
  if [ -x /usr/bin/chromium ]; then return 0; fi
  log "installing Debian's chromium for the browser tests"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

# axe-core for the browser tests' accessibility checks (tests/browser/support.py), into an ignored folder.
AXE_CORE_VERSION=4.14.1
setup_axe() {
  local dir="$ROOT/var/node"
  export AXE_CORE_JS="$dir/node_modules/axe-core/axe.min.js"
  if [ -f "$AXE_CORE_JS" ] && grep -q "\"version\": \"$AXE_CORE_VERSION\"" "$dir/node_modules/axe-core/package.json"; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    log "installing Debian's npm for axe-core"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm >/dev/null
  fi
  log "installing axe-core $AXE_CORE_VERSION for the browser tests"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --silent "axe-core@$AXE_CORE_VERSION"
}

# With DEBUG off, pages link hashed, compressed static files that only `collectstatic` makes (WhiteNoise's
# manifest storage): collect them before serving, or every page fails on a missing manifest entry.
collect_static() {
  if "$PY" manage.py shell -v0 -c 'from django.conf import settings; raise SystemExit(0 if settings.DEBUG else 1)'; then
    return 0
  fi
  log "DEBUG is off: collecting static files into STATIC_ROOT"
  "$PY" manage.py collectstatic --noinput -v0
}

migrate() {
  "$PY" manage.py migrate --noinput -v0
  "$PY" manage.py createcachetable
}

# Keep one worker running: start "$@" in its own process group, and whenever it exits (a crash, the
# OOM killer) kill what is left of its group (orphaned children would hold the GPU) and start it again
# after a backoff: 1 s, doubling to 30 s, back to 1 s once it had stayed up for a minute. TERM or INT
# stops the worker (TERM to its main process, which stops its cluster in order; KILL to the group after
# 20 s) and exits. Runs as a background subshell of cmd_start.
supervise() {
  local name="$1"; shift
  local child="" delay=1 started rc
  stop_child() {
    [ -n "$child" ] || return 0
    kill -TERM "$child" 2>/dev/null || true
    local tries=0
    while kill -0 "$child" 2>/dev/null && [ "$tries" -lt 200 ]; do sleep 0.1; tries=$((tries + 1)); done
    kill -KILL -- "-$child" 2>/dev/null || true
    kill -KILL "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  }
  trap 'stop_child; exit 0' INT TERM
  while true; do
    started=$SECONDS
    if command -v setsid >/dev/null 2>&1; then setsid "$@" & else "$@" & fi
    child=$!
    log "the $name worker is running (pid $child)"
    rc=0; wait "$child" || rc=$?
    kill -KILL -- "-$child" 2>/dev/null || true  # whatever the dead worker left behind
    if [ $((SECONDS - started)) -ge 60 ]; then delay=1; fi
    log "the $name worker exited with status $rc; restarting it in ${delay} s"
    sleep "$delay" & child=$!
    wait "$child" || true
    child=""
    delay=$((delay * 2 > 30 ? 30 : delay * 2))
  done
}

cmd_start() {
  setup_python requirements.txt
  migrate
  collect_static
  "$PY" manage.py ensure_admin
  # Says what is missing (and fetches the face pack when it can); the workers start either way.
  "$PY" manage.py check_models --fetch-missing || true
  local addr="${TWINSITE_ADDR:-127.0.0.1:8000}" web rc
  local pids=()
  trap 'log "stopping"; kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 0' INT TERM
  log "starting the default worker, the GPU worker and the web server"
  supervise default "$PY" manage.py qcluster & pids+=($!)
  (export Q_CLUSTER_NAME=gpu; supervise gpu "$PY" manage.py qcluster) & pids+=($!)
  "$PY" manage.py runserver "$addr" --noreload & web=$!; pids+=("$web")
  log "open http://$addr/  (Ctrl-C stops everything; a worker that exits is restarted)"
  rc=0; wait "$web" || rc=$?
  log "the web server exited with status $rc; stopping the workers"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
  exit 1
}

cmd_test() {
  setup_python requirements-dev.txt
  setup_chromium
  setup_axe
  export TWINSITE_DATA_DIR="${TWINSITE_DATA_DIR:-$ROOT/var/test}"
  export TEST_ARTIFACTS_DIR="${TEST_ARTIFACTS_DIR:-$ROOT/test-artifacts}"
  "$PY" -m ruff check --quiet .
  "$PY" -m ruff format --check --quiet .
  "$PY" manage.py makemigrations --check --dry-run -v0
  if [ "$#" -gt 0 ]; then
    "$PY" -m pytest "$@"
  else
    # The quick suite first, then the marked slow, load and browser tests.
    "$PY" -m pytest -m "not slow and not load and not browser"
    # Exit 5 means "no test matched the marker": not a failure.
    "$PY" -m pytest -m "slow or load or browser" || [ $? -eq 5 ]
  fi
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  test) shift; cmd_test "$@" ;;
  setup) shift; setup_python requirements-dev.txt; migrate ;;
  web) shift; setup_python requirements.txt; migrate; collect_static; exec "$PY" manage.py runserver "${TWINSITE_ADDR:-127.0.0.1:8000}" ;;
  worker) shift; setup_python requirements.txt; Q_CLUSTER_NAME="${1:-default}" exec "$PY" manage.py qcluster ;;
  manage) shift; setup_python requirements.txt; exec "$PY" manage.py "$@" ;;
  *) echo "usage: ./twinsite.sh start | test [pytest args] | setup | web | worker [default|gpu] | manage <command>" >&2; exit 2 ;;
esac
