#!/usr/bin/env bash
# A Python virtual environment with the upstream producer example's packages from PyPI
# (schemas/examples/python/requirements.txt: confluent-kafka, fastavro), for its test in
# `make test`. Idempotent; prints the venv's python.
#
# Environment: RF_CACHE_DIR (default ~/.cache/retailflow).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
RF_CACHE_DIR=${RF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/retailflow}
req=$repo/schemas/examples/python/requirements.txt
venv=$RF_CACHE_DIR/venv-producer
stamp=$venv/.requirements

if [[ -x $venv/bin/python && -f $stamp ]] && cmp -s "$req" "$stamp"; then
  echo "$venv/bin/python"; exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "python: installing python3-venv from Debian's packages" >&2
  sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
cp "$req" "$stamp"
echo "$venv/bin/python"
