#!/bin/sh
# Runs the integration suite (tests/integration/*.test.js) with Node's test runner against
# $ROUTER_BIN behind a real web server. ROUTER_SANITIZER=asan|valgrind makes every test also fail
# on sanitizer reports of the router processes.
#
#   ROUTER_FRONTS="lighttpd apache-fcgid apache-htaccess apache-cgi"   the set-ups to run, in turn
#   (see tests/integration/lib/harness.js); default: lighttpd only.
#   Extra arguments are test files (default: all of them; behind Apache, all but the ones that
#   start no web server or their own: cli, fastcgi, install and shared-hosting run once).
#
# Apache is started as an unprivileged user, as a hosting account runs it: as root, the Apache
# set-ups run the tests as www-data (setpriv); the lighttpd set-up runs as the caller.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
: "${ROUTER_BIN:=$ROOT/build/llm-router}"
export ROUTER_BIN
cd "$ROOT/tests"
conc=2
[ "${ROUTER_SANITIZER:-}" = valgrind ] && conc=1
status=0
for front in ${ROUTER_FRONTS:-lighttpd}; do
  echo "=== integration tests behind $front"
  as="" home=${HOME:-/tmp} files="$*"
  case "$front" in
    apache-*)
      [ "$(id -u)" -eq 0 ] && as="setpriv --reuid=www-data --regid=www-data --clear-groups" home=/tmp
      [ -n "$files" ] || files=$(ls integration/*.test.js | grep -Ev '/(cli|fastcgi|install|shared-hosting)\.test\.js$') ;;
  esac
  # shellcheck disable=SC2086
  ROUTER_FRONT=$front HOME=$home $as \
    node --test --test-concurrency="$conc" --test-reporter=spec ${files:-integration/} || status=1
done
exit $status
