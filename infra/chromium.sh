#!/usr/bin/env bash
# Headless Chromium from Debian's packages (`chromium`), for the operations page's browser test
# (connectors/ops/ui, driven with chromedp) in `make test`. Idempotent; prints the browser's path.
set -euo pipefail
for b in chromium chromium-browser; do
  if p=$(command -v "$b"); then
    echo "$p"; exit 0
  fi
done
echo "chromium: installing Debian's chromium package" >&2
sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
$sudo apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
