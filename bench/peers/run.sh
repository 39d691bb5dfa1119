#!/usr/bin/env bash
# Installs the pinned `stripe` npm package into bench/peers/node_modules (only
# when missing or different from the lock file) and times constructEvent on
# the payloads the Rust bench wrote. Usage: bench/peers/run.sh [payload-dir]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

command -v node >/dev/null || { echo "node (>= 20) is required" >&2; exit 2; }
wanted="$(node -p 'require("./package-lock.json").packages["node_modules/stripe"].version')"
installed="$(node -p 'try { require("./node_modules/stripe/package.json").version } catch { "" }')"
if [ "$installed" != "$wanted" ]; then
  # --ignore-scripts: nothing from the package runs at install time.
  npm ci --ignore-scripts --no-audit --no-fund >&2
fi

exec node constructEvent.js "$@"
