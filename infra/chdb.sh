#!/usr/bin/env bash
# chDB (ClickHouse embedded in a Python package, from PyPI) in a project-local virtual environment:
# the current-ClickHouse half of the view check (connectors/clickhouse/chdb_test.go). The tests'
# server stays Debian's clickhouse-server 18.16 (infra/local.sh): no current server is installable
# here, and chDB embeds the current engine and its query analyzer.
#
#   infra/chdb.sh install   create $RF_CHDB_VENV (default <repo>/.venv-chdb) and pip install chdb
#   infra/chdb.sh python    print the venv's python (installing first if needed)
#   infra/chdb.sh version   print the embedded ClickHouse version
#
# Environment: RF_CHDB_VENV, CHDB_VERSION (a pip requirement, default "chdb>=4,<5").
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
RF_CHDB_VENV=${RF_CHDB_VENV:-$repo/.venv-chdb}
CHDB_VERSION=${CHDB_VERSION:-chdb>=4,<5}

log() { printf 'chdb: %s\n' "$*" >&2; }
die() { printf 'chdb: error: %s\n' "$*" >&2; exit 1; }

install() {
  if [[ -f $RF_CHDB_VENV/.complete ]]; then return; fi
  command -v python3 >/dev/null || { log "installing python3"; apt_install python3; }
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    local v; v=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    log "installing python3-venv (python3 -m venv needs ensurepip)"
    apt_install "python$v-venv" || apt_install python3-venv
  fi
  rm -rf "$RF_CHDB_VENV"
  python3 -m venv "$RF_CHDB_VENV" || die "python3 -m venv $RF_CHDB_VENV failed"
  log "pip install '$CHDB_VERSION' into $RF_CHDB_VENV"
  if ! "$RF_CHDB_VENV/bin/pip" install -q --disable-pip-version-check "$CHDB_VERSION" >"$RF_CHDB_VENV/pip.log" 2>&1; then
    tail -20 "$RF_CHDB_VENV/pip.log" >&2
    die "pip install $CHDB_VERSION failed (log: $RF_CHDB_VENV/pip.log)"
  fi
  "$RF_CHDB_VENV/bin/python" -c 'import chdb' || die "chdb installed but does not import"
  touch "$RF_CHDB_VENV/.complete"
}

apt_install() {
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null 2>&1 && return 0
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

case ${1:-install} in
  install) install ;;
  python) install; echo "$RF_CHDB_VENV/bin/python" ;;
  version) install; "$RF_CHDB_VENV/bin/python" -c 'import chdb; print(chdb.query("SELECT version()", "TSV").bytes().decode().strip())' ;;
  *) die "usage: infra/chdb.sh install|python|version" ;;
esac
