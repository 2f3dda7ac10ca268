#!/bin/sh
# Runs the integration suite (tests/integration/*.test.js) with Node's test runner against
# $ROUTER_BIN behind a real web server. ROUTER_SANITIZER=asan|valgrind makes every test also fail
# on sanitizer reports of the router processes.
#
#   ROUTER_FRONTS="lighttpd apache-fcgid apache-htaccess apache-cgi"   the set-ups to run, in turn
#   (see tests/integration/lib/harness.js); default: lighttpd only.
#   Extra arguments are test files (default: all of them; behind Apache, all but the ones that
#   start no web server or their own: cli, fastcgi, install and shared-hosting run once).
#   ROUTER_ARTIFACTS  where the run keeps files to look at afterwards (the dashboard's screenshots),
#   one subdirectory per set-up; default test-artifacts/ in the checkout. Printed at the end.
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
# The unprivileged user must read the tests, the shipped files and the binary; a checkout it
# cannot reach (under /root, say) is mirrored into a temporary directory for the Apache set-ups.
as_www="setpriv --reuid=www-data --regid=www-data --clear-groups"
mirror=""
# Sets apache_root (and makes the mirror once).
apache_root=""
find_apache_root() {
  [ -z "$apache_root" ] || return 0
  if $as_www test -r "$ROOT/tests/integration/lib/harness.js" -a -x "$ROUTER_BIN"; then
    apache_root=$ROOT
    return 0
  fi
  mirror=$(mktemp -d "${TMPDIR:-/tmp}/llm-router-tests.XXXXXX")
  cp -a "$ROOT/conf" "$ROOT/www" "$ROOT/apache" "$ROOT/lighttpd" "$ROOT/tests" "$mirror/"
  mkdir -p "$mirror/build" && cp -a "$ROUTER_BIN" "$mirror/build/"
  chmod -R a+rX "$mirror"
  apache_root=$mirror
}
artifacts=${ROUTER_ARTIFACTS:-$ROOT/test-artifacts}
# Each set-up's output is kept, so that the failures of every set-up can be printed again last,
# where a CI log's tail shows them.
logs=$(mktemp -d "${TMPDIR:-/tmp}/llm-router-test-logs.XXXXXX")
trap '[ -z "$mirror" ] || rm -rf "$mirror"; rm -rf "$logs"' EXIT
status=0
for front in ${ROUTER_FRONTS:-lighttpd}; do
  echo "=== integration tests behind $front"
  as="" home=${HOME:-/tmp} files="$*" root=$ROOT bin=$ROUTER_BIN
  kept=$artifacts/$front
  mkdir -p "$kept"
  case "$front" in
    apache-*)
      if [ "$(id -u)" -eq 0 ]; then
        find_apache_root
        as=$as_www home=/tmp root=$apache_root
        [ "$root" = "$ROOT" ] || bin=$root/build/$(basename "$ROUTER_BIN")
        chown -R www-data:www-data "$kept"
        # Out of the unprivileged user's reach (a checkout under /root): a directory of its own.
        $as_www test -w "$kept" || { kept=$(mktemp -d "${TMPDIR:-/tmp}/llm-router-artifacts-$front.XXXXXX") && chown www-data:www-data "$kept"; }
      fi
      [ -n "$files" ] || files=$(ls integration/*.test.js | grep -Ev '/(cli|fastcgi|install|shared-hosting)\.test\.js$') ;;
  esac
  # shellcheck disable=SC2086
  { rc=0
    (cd "$root/tests" && ROUTER_FRONT=$front ROUTER_BIN=$bin ROUTER_ARTIFACTS=$kept HOME=$home $as \
      node --test --test-concurrency="$conc" --test-reporter=spec ${files:-integration/}) 2>&1 || rc=$?
    echo $rc > "$logs/rc"; } | tee "$logs/$front"
  if [ "$(cat "$logs/rc")" != 0 ]; then
    status=1
    failed="${failed:-} $front"
  fi
  kept_all="${kept_all:-}  $front: $kept
"
done
printf 'files kept from this run (screenshots):\n%s' "${kept_all:-}"
# The failing tests of each set-up, with their assertion messages (node's spec reporter lists
# them after "failing tests:"), colour codes and node's own stack frames removed.
for front in ${failed:-}; do
  echo "=== failures behind $front"
  sed -n '/failing tests:/,$p' "$logs/$front" | sed 's/\x1b\[[0-9;]*m//g' | grep -Ev '^\s*$|^\s*at .*(node:|node_modules)' | head -n 60
done
exit $status
