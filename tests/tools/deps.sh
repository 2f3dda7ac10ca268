#!/bin/sh
# Installs what a make target needs, from Debian's and npm's registries only.
#
#   tests/tools/deps.sh [build|test|asan|fuzz|bench|valgrind|run]...
#
# Missing Debian packages are installed when running as root (apt-get); otherwise the missing
# ones are listed and the script fails. The npm packages of the integration tests are installed
# from tests/package-lock.json when tests/node_modules is missing or older than the lock file.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

BUILD_PKGS="gcc make pkg-config libfcgi-dev libcurl4-openssl-dev libjansson-dev libconfig-dev libsqlite3-dev"
RUN_PKGS="lighttpd nodejs"
# chromium: the dashboard's test (tests/integration/dashboard.test.js) runs the page in it, headless.
TEST_PKGS="lighttpd apache2 libapache2-mod-fcgid nodejs npm sqlite3 curl procps util-linux openssl chromium"

want=""
[ $# -eq 0 ] && set -- test
for target in "$@"; do
  case "$target" in
    build) want="$want $BUILD_PKGS" ;;
    run) want="$want $BUILD_PKGS $RUN_PKGS" ;;
    test) want="$want $BUILD_PKGS $TEST_PKGS" ;;
    asan) want="$want $BUILD_PKGS $TEST_PKGS clang libclang-rt-dev" ;;
    fuzz) want="$want $BUILD_PKGS clang libclang-rt-dev" ;;
    bench) want="$want $BUILD_PKGS $TEST_PKGS wrk util-linux nginx openssl ca-certificates linux-perf" ;;
    valgrind) want="$want $BUILD_PKGS $TEST_PKGS valgrind" ;;
    *) echo "deps.sh: unknown target $target" >&2; exit 2 ;;
  esac
done

missing=""
for p in $want; do
  case " $missing " in *" $p "*) continue ;; esac
  # nodejs from another source (nvm, NodeSource) is fine when node and npm work.
  if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

if [ -n "$missing" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages:$missing" >&2
    echo "Install them with: sudo apt-get install$missing" >&2
    exit 1
  fi
  echo "Installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y --no-install-recommends $missing >/dev/null
  }
fi

case " $* " in
  *" test "*|*" asan "*|*" bench "*|*" valgrind "*)
    if [ ! -d "$ROOT/tests/node_modules" ] || [ "$ROOT/tests/package-lock.json" -nt "$ROOT/tests/node_modules" ]; then
      echo "Installing the npm packages of the integration tests"
      (cd "$ROOT/tests" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules)
    fi
    ;;
esac
exit 0
