#!/bin/sh
# Starts the router behind lighttpd on 127.0.0.1:$PORT in the foreground (used by `make run`).
#
# Providers whose API key is in the environment are called for real. Every other provider is
# answered by the project's fake provider, started here and labelled "demo" in /v1/models,
# in the X-Router-Provider header and in the request log. Ctrl-C stops everything.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-8080}
BUILD=${BUILD:-build}
RUNDIR="$ROOT/$BUILD/run"
CONFIG=${LLM_ROUTER_CONFIG:-$ROOT/conf/llm-router.conf}
mkdir -p "$RUNDIR" "$ROOT/data"

"$ROOT/$BUILD/llm-router" check-config "$CONFIG" >/dev/null

FAKE_PID=
cleanup() {
  [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null || true
  [ -f "$RUNDIR/lighttpd.pid" ] && kill "$(cat "$RUNDIR/lighttpd.pid")" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if command -v node >/dev/null 2>&1; then
  rm -f "$RUNDIR/fake.port"
  node "$ROOT/tests/fake/provider.js" 0 > "$RUNDIR/fake.port" &
  FAKE_PID=$!
  FAKE_PORT=
  i=0
  while [ -z "$FAKE_PORT" ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
    FAKE_PORT=$(sed -n 's/.*"port":\([0-9][0-9]*\).*/\1/p' "$RUNDIR/fake.port" 2>/dev/null)
  done
  [ -n "$FAKE_PORT" ] || { echo "the demo provider did not start" >&2; exit 1; }
  export LLM_ROUTER_DEMO_URL="http://127.0.0.1:$FAKE_PORT"
else
  echo "node is not installed: no demo provider (providers without keys are unavailable)" >&2
fi

# lighttpd's own error pages: www/errors/<status>.json under the names server.errorfile-prefix
# gives them (json-<status>.html).
rm -rf "$RUNDIR/errors" && mkdir -p "$RUNDIR/errors"
for f in "$ROOT"/www/errors/*.json; do
  cp "$f" "$RUNDIR/errors/json-$(basename "$f" .json).html"
done

sed -e "s|@ROOT@|$ROOT|g" -e "s|@PORT@|$PORT|g" -e "s|@RUNDIR@|$RUNDIR|g" \
    -e "s|@BIN@|$ROOT/$BUILD/llm-router|g" -e "s|@CONFIG@|$CONFIG|g" -e "s|@ERRORS@|$RUNDIR/errors|g" \
    -e "s|@PROCS@|2|g" -e "s|@ERRORLOG@|/dev/stderr|g" \
    "$ROOT/lighttpd/llm-router-dev.conf.in" > "$RUNDIR/lighttpd.conf"

# Callers authenticate with an agent key (routing.auth_mode = "key"): make one for a demo agent
# once and keep it for the next runs.
KEY=
if grep -q '^[[:space:]]*auth_mode[[:space:]]*=[[:space:]]*"key"' "$CONFIG"; then
  if [ -s "$RUNDIR/demo.key" ] && LLM_ROUTER_CONFIG="$CONFIG" "$ROOT/$BUILD/llm-router" keys list 2>/dev/null |
      grep -q "^$(cut -c5-16 "$RUNDIR/demo.key") .* active\$"; then
    KEY=$(cat "$RUNDIR/demo.key")
  else
    (umask 077 && LLM_ROUTER_CONFIG="$CONFIG" "$ROOT/$BUILD/llm-router" keys create --agent demo_agent \
      > "$RUNDIR/demo.key" 2>/dev/null) && KEY=$(cat "$RUNDIR/demo.key")
  fi
fi

echo "LLM Router on http://127.0.0.1:$PORT/v1 (Ctrl-C stops)"
if [ -n "$KEY" ]; then
  echo "demo agent key (agent demo_agent, tier T3; kept in $RUNDIR/demo.key): $KEY"
  echo "try: curl -H 'Authorization: Bearer $KEY' -d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}' http://127.0.0.1:$PORT/v1/chat/completions"
fi
"$ROOT/$BUILD/llm-router" check-config "$CONFIG" | sed -n '/^providers:/,/^models:/p'
echo "request log: $("$ROOT/$BUILD/llm-router" check-config "$CONFIG" | sed -n 's/^database: //p')"
/usr/sbin/lighttpd -D -f "$RUNDIR/lighttpd.conf" &
LPID=$!
wait $LPID
