#!/usr/bin/env bash
# Tools the diagram tests check every emitted diagram with, installed once from the package
# registries (never a browser download): the real Mermaid parser (npm `mermaid`, run under
# Node with `jsdom` standing in for the DOM its DOMPurify needs) and Graphviz's `dot` (apt).
# Like starter-data.sh this never fails the build: when a tool cannot be installed here it
# prints the one command that gets it and carries on (those tests skip, or fail when CI=true).
#
# Measured on a 2-core machine: the npm install is ~54 MB of tarballs (153 packages) and
# 181 MB in .cache/mermaid/node_modules; it took 24 s with an empty npm cache and 19 s from a
# warm ~/.npm (unpacking dominates). Graphviz is 12 Debian packages, ~4 MB, 7.5 s. With both
# present this script takes 0.01 s.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 0

MERMAID=11.17.2
JSDOM=29.1.1
DIR=.cache/mermaid

installed() {  # installed PACKAGE VERSION: node_modules holds exactly that version
  grep -qs "\"version\": \"$2\"" "$DIR/node_modules/$1/package.json"
}

if installed mermaid "$MERMAID" && installed jsdom "$JSDOM"; then
  :
elif command -v npm >/dev/null; then
  # A package.json pinned to exact versions makes the install repeatable and lets a later
  # pin change replace the old tree instead of piling up next to it.
  mkdir -p "$DIR"
  cat >"$DIR/package.json" <<JSON
{
  "name": "fieldguide-diagram-tools",
  "private": true,
  "description": "Written by scripts/diagram-tools.sh; the diagram tests parse Mermaid with these.",
  "dependencies": { "mermaid": "$MERMAID", "jsdom": "$JSDOM" }
}
JSON
  echo "installing mermaid@$MERMAID and jsdom@$JSDOM into $DIR (about 180 MB) ..."
  npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error >/dev/null ||
    echo "mermaid missing; to get it: npm install --prefix $DIR --no-audit --no-fund --save-exact mermaid@$MERMAID jsdom@$JSDOM"
else
  echo "mermaid missing and npm not found; install Node.js 20.19+ with npm (e.g. sudo apt-get install -y nodejs npm), then: npm install --prefix $DIR --no-audit --no-fund --save-exact mermaid@$MERMAID jsdom@$JSDOM"
fi

# jsdom 29 needs Node 20.19 or newer (as tests/diagrams/validators.py checks); older, they skip.
if command -v node >/dev/null &&
  ! node -e 'const [a, b] = process.versions.node.split(".").map(Number);
    process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
  echo "node $(node --version) is too old for jsdom $JSDOM; install Node.js 20.19 or newer"
fi

if ! command -v dot >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Try without `apt-get update` first: it costs ~10 s and is only needed on a stale index.
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq graphviz >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; } ||
      echo "graphviz missing; to get it: sudo apt-get install -y graphviz"
  else
    echo "graphviz missing; to get it: sudo apt-get install -y graphviz"
  fi
fi
exit 0
