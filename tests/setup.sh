#!/usr/bin/env bash
# Installs what the suites need: componentize-py (pinned, in tests/python/.venv) for the Python
# example plugin, PostgreSQL (tests/postgres.rs starts throwaway clusters with
# its initdb and pg_ctl) and openssl (its TLS test makes a certificate authority), Chromium, Node.js and npm for the browser test (tests/browser.rs),
# from Debian's packages when missing, and the pinned node modules of tests/browser (npm ci).
# Idempotent; run as root: `bash tests/setup.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/setup.sh: installing ${missing[*]} needs root (apt-get)" >&2
    exit 1
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# npm ci unless node_modules already holds exactly what the lock file pins.
if ! node -e '
  const lock = require("./tests/browser/package-lock.json").packages;
  for (const [path, pkg] of Object.entries(lock)) {
    if (!path) continue;
    const have = require("./tests/browser/" + path + "/package.json").version;
    if (have !== pkg.version) process.exit(1);
  }' 2>/dev/null; then
  npm ci --prefix tests/browser --no-audit --no-fund
fi

# The pinned packages of tests/python/requirements.txt, in tests/python/.venv: componentize-py
# for the Python example plugin (tests/fixtures.rs builds it), standardwebhooks for verifying
# event deliveries (tests/crm.rs). Installed again whenever what is there is not what is pinned.
venv=tests/python/.venv
if ! cmp -s tests/python/requirements.txt "$venv/installed-requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt "$venv/installed-requirements.txt"
fi
