#!/usr/bin/env bash
# Headless Chromium and its WebDriver (Debian's packages) for the dashboard's end-to-end test.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-dejavu-core >/dev/null
