#!/usr/bin/env bash
# `npm run setup` (and .ci/run): the debuggees the integration tests start
# (test/integration/discovery.test.ts): debugpy in the system Python
# (Debian's python3-debugpy) and a JDK for a JDWP agent (`java File.java`).
# Installed with apt-get when missing and run as root; otherwise one line
# says what to run. Nothing to do when both are there.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }

missing=()
/usr/bin/python3 -c 'import debugpy' >/dev/null 2>&1 || missing+=(python3-debugpy)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
if [ "${#missing[@]}" -eq 0 ]; then
  say "debuggees for the tests: debugpy and a JDK are installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  say "the integration tests start debugpy and a JVM; install them: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
say "installing ${missing[*]} (apt-get): the debuggees of the integration tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
/usr/bin/python3 -c 'import debugpy' || { say "python3-debugpy is installed but /usr/bin/python3 cannot import debugpy" >&2; exit 1; }
say "debuggees for the tests: debugpy and a JDK are installed"
