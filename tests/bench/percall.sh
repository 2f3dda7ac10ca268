#!/usr/bin/env bash
# percall.sh - what one call costs the router's responder process: CPU time, context switches and
# chosen system calls per call, counted by perf(1) over a wrk run.
#
#   tests/bench/percall.sh [BIN]          (BIN: the router binary; default $BUILD/llm-router;
#                                           $BUILD/bare_relay measures the bare relay of bench.sh)
#
# lighttpd with one responder (BENCH_THREADS threads, "max-procs" => 1) runs on CPU
# $BENCH_SUT_CPU; wrk and the fake upstream (tests/bench/fake_upstream.c) on CPU $BENCH_LOAD_CPU,
# as in `make bench`. The configuration is the shipped one with budgets raised out of reach and
# auth_mode "none"; request log and budgets stay on. After a warm-up, `perf stat -p <responder>`
# counts while wrk -c$BENCH_CONNECTIONS runs for $BENCH_DURATION; the counts are divided by the
# calls wrk saw answered. The report also gives how busy the SUT CPU was during the run: the
# counts only say what a call costs when that CPU is the limit. Then the CPU time per call of each
# kind of responder thread (by thread name: llm-worker, llm-upstream, llm-writer, ...; README
# "Threads of a responder") and of lighttpd, whose sum is what CPU $BENCH_SUT_CPU spends on a call.
# perf counts the threads there are after the warm-up (at the same load, the worker pool has grown
# by then).
#
# Environment: BUILD (build), BENCH_THREADS=8 BENCH_CONNECTIONS=64 BENCH_DURATION=10s
# BENCH_SUT_CPU=0 BENCH_LOAD_CPU=1, PERCALL_SYSCALLS="futex pwrite64 poll read write fcntl"
# (system calls to count), PERCALL_STREAM=1 (streamed calls, with include_usage).
# Needs perf (Debian: linux-perf), wrk and lighttpd; `make bench` installs the last two.
set -euo pipefail

die() { echo "percall: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
BIN=$(realpath "${1:-$ROOT/$BUILD/llm-router}")
FAKE_BIN=$ROOT/$BUILD/fake_upstream
THREADS=${BENCH_THREADS:-8}
CONNS=${BENCH_CONNECTIONS:-64}
DURATION=${BENCH_DURATION:-10s}
SUT_CPU=${BENCH_SUT_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SYSCALLS=${PERCALL_SYSCALLS:-futex pwrite64 poll read write fcntl}
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}

for tool in perf wrk taskset curl "$LIGHTTPD"; do
	command -v "$tool" >/dev/null || die "$tool is missing (perf: apt-get install linux-perf)"
done
[ -x "$BIN" ] || die "no router binary at $BIN (make, or give its path)"
[ -x "$FAKE_BIN" ] || die "no $FAKE_BIN (make $BUILD/fake_upstream)"

# shellcheck source=tests/bench/common.sh
. "$ROOT/tests/bench/common.sh"

TMP=$(mktemp -d /tmp/llm-router-percall.XXXXXX)
mkdir "$TMP/data"    # the router makes its database, not the directory (LLM_ROUTER_HOME/data)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

taskset -c "$LOAD_CPU" "$FAKE_BIN" --port 0 >"$TMP/fake.port" 2>"$TMP/fake.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/fake.port" ] && break; sleep 0.05; done
FPORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$TMP/fake.port")
[ -n "$FPORT" ] || die "the fake upstream did not start: $(cat "$TMP/fake.log")"

bench_router_config "$TMP" "$THREADS"

if [ "$(basename "$BIN")" = bare_relay ]; then
	BIN_ENV="\"FCGI_THREADS\" => \"$THREADS\", \"OPENAI_API_KEY\" => \"sk-fake-percall\",
    \"BARE_RELAY_UPSTREAM\" => \"http://127.0.0.1:$FPORT/openai/v1/chat/completions\""
else
	BIN_ENV="\"LLM_ROUTER_CONFIG\" => \"$TMP/llm-router.conf\", \"LLM_ROUTER_HOME\" => \"$TMP\",
    \"OPENAI_API_KEY\" => \"sk-fake-percall\", \"OPENAI_BASE_URL\" => \"http://127.0.0.1:$FPORT/openai/v1\""
fi

PORT=$(free_port)
lighttpd_base_conf "$TMP" "$PORT" >"$TMP/lighttpd.conf"
cat >>"$TMP/lighttpd.conf" <<EOF
server.stream-response-body = 2
fastcgi.server = ( "/v1" => ((
  "bin-path" => "$BIN",
  "socket" => "$TMP/fcgi.sock",
  "max-procs" => 1,
  "check-local" => "disable",
  "bin-environment" => ( $BIN_ENV ),
  "read-timeout" => 180
)) )
EOF
taskset -c "$SUT_CPU" "$LIGHTTPD" -D -f "$TMP/lighttpd.conf" >"$TMP/lighttpd.out" 2>&1 &
LPID=$!
PIDS+=("$LPID")
wait_up "$LPID" "http://127.0.0.1:$PORT/" || die "lighttpd did not start: $(tail -n 5 "$TMP/lighttpd.out" "$TMP/error.log")"

STREAM=""
[ "${PERCALL_STREAM:-0}" = 1 ] && STREAM=', "stream": true, "stream_options": {"include_usage": true}'
BODY='{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]'$STREAM'}'
cat >"$TMP/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'
EOF
URL=http://127.0.0.1:$PORT/v1/chat/completions
taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s "$TMP/post.lua" "$URL" >"$TMP/warm.out" 2>&1 ||
	die "the warm-up failed: $(cat "$TMP/warm.out")"
grep -q "Non-2xx\|Socket errors" "$TMP/warm.out" && die "the warm-up had errors: $(cat "$TMP/warm.out")"
RPID=$(pgrep -n -f "^$BIN" || true)
[ -n "$RPID" ] || die "no responder process running $BIN"

EVENTS=task-clock,context-switches
for s in $SYSCALLS; do EVENTS="$EVENTS,syscalls:sys_enter_$s"; done
cpu_line() { grep "^cpu$SUT_CPU " /proc/stat; }
before=$(cpu_line)
perf stat -x, --per-thread -e "$EVENTS" -p "$RPID,$LPID" -o "$TMP/perf.csv" -- \
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" -s "$TMP/post.lua" "$URL" >"$TMP/wrk.out" 2>&1 ||
	die "the run failed: $(cat "$TMP/wrk.out")"
after=$(cpu_line)
grep -q "Non-2xx\|Socket errors" "$TMP/wrk.out" &&
	die "the run had errors: $(cat "$TMP/wrk.out"); one call: $(curl -s -H 'Content-Type: application/json' --data-binary "$BODY" "$URL")"
CALLS=$(awk '/requests in/ { print $1 }' "$TMP/wrk.out")
[ -n "$CALLS" ] && [ "$CALLS" -gt 0 ] || die "wrk answered no calls: $(cat "$TMP/wrk.out")"
BUSY=$(awk -v a="$before" -v b="$after" 'BEGIN { n = split(a, x); split(b, y); t = 0
	for (i = 2; i <= n; i++) t += y[i] - x[i]
	idle = (y[5] - x[5]) + (y[6] - x[6]); printf "%.0f", (t > 0 ? 100 * (t - idle) / t : 0) }')

echo "percall: $BIN, $THREADS threads, wrk -c$CONNS for $DURATION${STREAM:+, streamed}: $CALLS calls, $(awk '/Requests\/sec/ { print $2 }' "$TMP/wrk.out") calls/s; CPU $SUT_CPU (lighttpd and the responder) $BUSY% busy"
# perf's lines: THREADNAME-TID,count,unit,event,... (one a thread and event; lighttpd is one thread).
awk -F, -v n="$CALLS" '
	$2 !~ /^[0-9.]+$/ { next }
	{ name = $1; sub(/-[0-9]+$/, "", name) }
	name == "lighttpd" { if ($4 == "task-clock") web += $2; next }
	{ if (!($4 in sum)) order[++ne] = $4; sum[$4] += $2 }
	$4 == "task-clock" { if (!(name in cpu)) names[++nn] = name; cpu[name] += $2; nthr[name]++ }
	END {
		for (i = 1; i <= ne; i++) {
			e = order[i]
			if (e == "task-clock")
				printf "  %-28s %10.1f us a call\n", "CPU time (task-clock)", 1000 * sum[e] / n
			else
				printf "  %-28s %10.2f a call\n", e, sum[e] / n
		}
		print "  CPU time a call, by thread:"
		for (i = 1; i <= nn; i++)
			printf "    %-26s %10.1f us  (%d thread%s)\n", names[i], 1000 * cpu[names[i]] / n,
				nthr[names[i]], nthr[names[i]] == 1 ? "" : "s"
		printf "    %-26s %10.1f us\n", "lighttpd", 1000 * web / n
		printf "  %-28s %10.1f us a call\n", "responder and lighttpd", 1000 * (sum["task-clock"] + web) / n
	}' "$TMP/perf.csv"
