#!/bin/sh
# Runs the integration suite (tests/integration/*.test.js) with Node's test runner against
# $ROUTER_BIN behind real lighttpd. ROUTER_SANITIZER=asan|valgrind makes every test also fail
# on sanitizer reports of the router processes.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${ROUTER_BIN:=$ROOT/build/llm-router}"
export ROUTER_BIN
cd "$ROOT/tests"
conc=2
[ "${ROUTER_SANITIZER:-}" = valgrind ] && conc=1
exec node --test --test-concurrency="$conc" --test-reporter=spec integration/
