#!/usr/bin/env bash
# bench.sh - benchmarks of the router next to its baselines, measured in the same run (`make bench`).
#
# Targets (each answers POST /v1/chat/completions with an OpenAI chat completion):
#   fake    the fake upstream (tests/bench/fake_upstream.c) called directly: the floor
#   fixed   lighttpd + fcgi_fixed, a threaded FastCGI responder returning a fixed body: the cost of
#           the web server and the FastCGI hop alone (no upstream)
#   bare    lighttpd + bare_relay, a threaded FastCGI responder relaying to the fake upstream with a
#           per-thread keep-alive libcurl handle and nothing else: the ceiling of this design
#   router  lighttpd + llm-router (model gpt-4o-mini on the openai provider, whose base URL points at
#           the fake upstream), with its normal configuration: request log, budgets and all
#   router_scraped  the same router with an admin key, scraped as Prometheus would during each of
#           its runs: tests/bench/scraper.c GETs $BENCH_SCRAPE_PATH (/metrics) with the admin key
#           every second, on the load CPU; the report compares it with the router row and gives the scrapes' own
#           count, status and latency
#   router_fcgid  the same router behind Apache + mod_fcgid, with apache/llm-router-fcgid.conf
#   router_cgi    the same router as a plain CGI program behind Apache + mod_cgid (www/.htaccess on
#                 a host without mod_fcgid): one process per request; the report gives the cost of
#                 a process start per request against router_fcgid, and the binary's own start-up
#                 cost measured without a web server
#
# For each mode (non-stream, and stream with stream_options.include_usage) and each target:
#   latency     wrk -t1 -c1 --latency: p50 and p99. "Added" latency is the target's minus the fake
#               upstream's own, measured in the same round.
#   throughput  wrk -t1 -c$BENCH_CONNECTIONS (64): requests per second at saturation.
#   +20 ms      the same load against a second instance of the target whose upstream is a second fake
#               that answers $BENCH_DELAY_MS (20) ms after each request: what the design sustains
#               when upstream calls take time (64 connections cannot exceed 64 / 20 ms = 3,200 req/s;
#               a responder that blocks one of its 8 threads per call, 8 / 20 ms = 400 req/s).
#   memory      VmRSS (/proc/PID/status) of every responder process (children of lighttpd) and of
#               lighttpd, read after all the load.
# Rounds interleave the targets (round 1: every target, round 2: every target, ...) and the tables
# show medians over BENCH_ROUNDS rounds. Ratios compare each target with the bare relay: throughput
# target/bare, latency target-added / bare-added. Before every measured run sync(1) writes back what
# earlier runs left dirty (request logs), so that the writeback is not charged to the next target.
# Each target runs as long-lived instances started once (warmed up for 1 s per mode), not restarted
# between rounds; the router's request log keeps growing over the run as it would in service.
#
# Placement on a 2-core machine: the system under test (lighttpd and its FastCGI responders) is
# pinned to CPU $BENCH_SUT_CPU (0); wrk and the fake upstreams share CPU $BENCH_LOAD_CPU (1).
# Responders run $BENCH_THREADS (8) threads ("max-procs" => 1).
#
# Every wrk run must be all 2xx with no socket errors (targets marked tolerant have their failures
# reported instead, in bold), the router's SQLite request log must hold a row per request, and
# every scrape of router_scraped must answer 200; otherwise the script stops with an error.
# Results are printed and written to bench-results/bench-<timestamp>.md.
#
# Environment:
#   BUILD                build directory holding llm-router, fcgi_fixed, bare_relay, fake_upstream,
#                        scraper
#   BENCH_ROUNDS=3       rounds (medians are over these)
#   BENCH_DURATION=5s    length of one wrk run
#   BENCH_ONLY=          targets to run, e.g. "router" or "bare,router" (the fake upstream always
#                        runs: added latency is measured against it), "inflight" for the in-flight
#                        scenario; default: all
#   BENCH_MODES="nonstream stream"
#   BENCH_CONNECTIONS=64 BENCH_THREADS=8 BENCH_DELAY_MS=20 BENCH_SUT_CPU=0 BENCH_LOAD_CPU=1
#   BENCH_KEEP_TMP=1     keep the temporary directory (configs, logs, request-log databases)
#   BENCH_SCRAPE_PATH=/metrics  what router_scraped's scraper fetches (with the admin key)
#
# The in-flight scenario: after these targets, tests/bench/inflight.sh holds 1,024 concurrent
# streaming calls against a slow streaming upstream behind a local TLS front, for the router with
# its shipped configuration next to an nginx proxy (see its header); its table is appended to this
# run's report. BENCH_ONLY=inflight runs it alone (as `make bench-inflight` does); a BENCH_ONLY
# without "inflight" leaves it out.
#
# Adding a scenario: write target_<name>_label, target_<name>_start (and optionally
# target_<name>_upstream=0 / target_<name>_verify), then add <name> to ALL_TARGETS; see the router
# target below. A scenario needing another router configuration (another provider, a failing first
# model, budgets off) edits its own copy of the configuration in its start function.
#
# Variables named by string (target_<t>_label, FAKE_<name>, P50_<t>) are read via get_var.
# shellcheck disable=SC2034,SC2154,SC2015
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD ;; *) BIN=$ROOT/$BUILD ;; esac
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-5s}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-8}
DELAY_MS=${BENCH_DELAY_MS:-20}
SUT_CPU=${BENCH_SUT_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
MODES=${BENCH_MODES:-nonstream stream}
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
WRK=${WRK:-wrk}
MODEL=gpt-4o-mini
API_KEY=bench-key
ADMIN_KEY=bench-admin-key-0123456789
SCRAPE_PATH=${BENCH_SCRAPE_PATH:-/metrics}

ALL_TARGETS="fake fixed bare router router_scraped router_nobudget router_nolog router_anthropic router_fallback router_fcgid router_cgi"
APACHE=${APACHE:-/usr/sbin/apache2}

die() {
	echo "bench: FAILED: $*" >&2
	exit 1
}
# shellcheck source=tests/bench/common.sh
. "$ROOT/tests/bench/common.sh"
note() { echo "bench: $*" >&2; }

# The in-flight scenario runs after the other targets unless BENCH_ONLY leaves it out; alone when
# it is all BENCH_ONLY names.
RUN_INFLIGHT=1
if [ -n "${BENCH_ONLY:-}" ]; then
	RUN_INFLIGHT=0
	only=
	for t in $(echo "$BENCH_ONLY" | tr ',' ' '); do
		if [ "$t" = inflight ]; then RUN_INFLIGHT=1; else only="$only $t"; fi
	done
	[ -n "$only" ] || BUILD=$BUILD exec "$ROOT/tests/bench/inflight.sh"
	BENCH_ONLY=${only# }
fi

for tool in "$WRK" "$LIGHTTPD" taskset curl; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
for b in llm-router fcgi_fixed bare_relay fake_upstream scraper; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing (run: make BUILD=$BUILD bench)"
done
NCPU=$(nproc)
[ "$SUT_CPU" -lt "$NCPU" ] && [ "$LOAD_CPU" -lt "$NCPU" ] || die "CPUs $SUT_CPU and $LOAD_CPU are not both present ($NCPU online)"

TARGETS=
if [ -n "${BENCH_ONLY:-}" ]; then
	for t in $(echo "$BENCH_ONLY" | tr ',' ' '); do
		case " $ALL_TARGETS " in *" $t "*) ;; *) die "unknown target '$t' in BENCH_ONLY (known: $ALL_TARGETS)" ;; esac
	done
	for t in $ALL_TARGETS; do
		case ",$(echo "$BENCH_ONLY" | tr ' ' ','),fake," in *",$t,"*) TARGETS="$TARGETS $t" ;; esac
	done
else
	TARGETS=$ALL_TARGETS
fi
TARGETS=${TARGETS# }

# The system under test sees only what the benchmark sets: no real provider keys, no demo URL, no
# admin key.
unset LLM_ROUTER_DEMO_URL LLM_ROUTER_CONFIG LLM_ROUTER_HOME LLM_ROUTER_ADMIN_KEY OPENAI_BASE_URL \
	ANTHROPIC_API_KEY GEMINI_API_KEY DEEPSEEK_API_KEY OPENROUTER_API_KEY GROQ_API_KEY OPENAI_API_KEY

TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm-router-bench.XXXXXX")
RES=$TMP/results
mkdir -p "$RES"
PIDS=()

# stop_all: stops every process the benchmark started.
stop_all() {
	local p
	# lighttpd leaves its FastCGI responders running when it stops: they are signalled by PID, and
	# killed if still there two seconds later.
	for p in "${PIDS[@]}" $(cat "$TMP"/*/responder.pids 2>/dev/null); do kill "$p" 2>/dev/null || true; done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for p in "${PIDS[@]}" $(cat "$TMP"/*/responder.pids 2>/dev/null); do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive = 0 ] && break
		sleep 0.2
	done
	for p in "${PIDS[@]}" $(cat "$TMP"/*/responder.pids 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_all
	if [ "${BENCH_KEEP_TMP:-0}" = 1 ] || [ $rc -ne 0 ]; then
		note "temporary files kept in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers ----

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# descendants_of PID: "PID COMM" of every process below PID (Apache's children, mod_fcgid's
# process manager and its FastCGI processes, mod_cgid's daemon and its CGI processes, lighttpd's
# responders).
descendants_of() {
	ps -e -o pid=,ppid=,comm= | awk -v root="$1" '
		{ parent[$1] = $2; comm[$1] = $3 }
		END {
			for (p in parent) {
				q = p
				while (q in parent && q != root && q > 1) q = parent[q]
				if (q == root && p != root) print p, comm[p]
			}
		}'
}

# The FastCGI/CGI processes below a web server's process (not its own).
responders_of() { descendants_of "$1" | awk '$2 != "apache2" && $2 != "lighttpd" { print $1 }'; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# record KEY VALUE / get KEY: medians over rounds
record() { echo "$2" >>"$RES/$1"; }
get() { [ -s "$RES/$1" ] && median <"$RES/$1" || echo ""; }
last() { [ -s "$RES/$1" ] && tail -n 1 "$RES/$1" || echo ""; }

# Instance state: URL_<inst>, DIR_<inst>, LPID_<inst> (inst names are [a-z_]).
set_var() { printf -v "$1" '%s' "$2"; }
get_var() { local n=$1; echo "${!n:-}"; }

# ---- fake upstreams ----

start_fake() { # start_fake NAME [fake_upstream args...]; sets FAKE_<NAME> to http://127.0.0.1:PORT
	local name=$1 out=$TMP/fake-$1.port
	shift
	taskset -c "$LOAD_CPU" "$BIN/fake_upstream" --port 0 "$@" >"$out" 2>"$TMP/fake-$name.log" &
	PIDS+=($!)
	set_var "FAKEPID_$name" $!
	for _ in $(seq 100); do
		[ -s "$out" ] && break
		sleep 0.05
	done
	local port
	port=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$out")
	[ -n "$port" ] || die "fake upstream $name did not start: $(cat "$TMP/fake-$name.log")"
	set_var "FAKE_$name" "http://127.0.0.1:$port"
}

# ---- web servers ----

# serving INST PID PORT: the instance's web server runs as PID and answers on PORT.
serving() {
	set_var "LPID_$1" "$2"
	set_var "DIR_$1" "$TMP/$1"
	set_var "URL_$1" "http://127.0.0.1:$3/v1/chat/completions"
}

# not_started INST PID NAME LOG...: stops a web server that did not come up; returns (the caller
# tries another port) when its port was taken, and stops the benchmark otherwise.
not_started() {
	local inst=$1 pid=$2 name=$3
	shift 3
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	grep -qi "address already in use" "$@" 2>/dev/null || die "$inst: $name did not start: $(tail -n 5 "$@")"
}

# ---- lighttpd + FastCGI responder ----

# start_lighttpd INST BIN_PATH [NAME=VALUE ...]: lighttpd on a free port on the SUT CPU with
# BIN_PATH as its only FastCGI application, environment as given, mounted at /v1 and at each path
# of $LIGHTTPD_MOUNTS (one backend for all: the same socket, so lighttpd spawns it once).
start_lighttpd() {
	local inst=$1 bin=$2 dir=$TMP/$1
	shift 2
	mkdir -p "$dir"
	local env="" kv mounts="" m
	for kv in "$@"; do
		env="$env${env:+, }\"${kv%%=*}\" => \"${kv#*=}\""
	done
	for m in /v1 ${LIGHTTPD_MOUNTS:-}; do
		mounts="$mounts${mounts:+, }\"$m\" => ((
  \"bin-path\" => \"$bin\",
  \"socket\" => \"$dir/fcgi.sock\",
  \"max-procs\" => 1,
  \"check-local\" => \"disable\",
  \"bin-environment\" => ( $env ),
  \"read-timeout\" => 180
))"
	done
	local port lpid
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		{
			lighttpd_base_conf "$dir" "$port"
			echo "server.stream-response-body = 2"
			echo "fastcgi.server = ( $mounts )"
		} >"$dir/lighttpd.conf"
		: >"$dir/error.log"
		taskset -c "$SUT_CPU" "$LIGHTTPD" -D -f "$dir/lighttpd.conf" >"$dir/lighttpd.out" 2>&1 &
		lpid=$!
		PIDS+=("$lpid")
		if wait_up "$lpid" "http://127.0.0.1:$port/"; then
			sleep 0.2
			responders_of "$lpid" >"$dir/responder.pids"
			[ -s "$dir/responder.pids" ] || die "$inst: lighttpd runs but no FastCGI responder was spawned; $dir/error.log: $(tail -n 5 "$dir/error.log")"
			serving "$inst" "$lpid" "$port"
			return
		fi
		not_started "$inst" "$lpid" lighttpd "$dir/lighttpd.out" "$dir/error.log"
	done
	die "$inst: lighttpd found no free port"
}

# ---- Apache ----

# start_apache INST FCGID(1|0) SITE_FILE: Apache 2.4 (event MPM) on a free port on the SUT CPU with
# the modules of the set-up and the site configuration in SITE_FILE (@PORT@ replaced). As root it
# runs as www-data, like a hosting account (Apache refuses to serve as root).
start_apache() {
	local inst=$1 fcgid=$2 site=$3 dir=$TMP/$1 port apid m
	local as=()
	if [ "$(id -u)" = 0 ]; then
		as=(setpriv --reuid=www-data --regid=www-data --clear-groups)
		chmod 711 "$TMP"
	fi
	mkdir -p "$dir/apache/fcgid"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		{
			for m in mpm_event authz_core authz_host mime alias rewrite env; do
				echo "LoadModule ${m}_module /usr/lib/apache2/modules/mod_$m.so"
			done
			if [ "$fcgid" = 1 ]; then
				echo "LoadModule fcgid_module /usr/lib/apache2/modules/mod_fcgid.so"
				echo "FcgidIPCDir \"$dir/apache/fcgid\""
				echo "FcgidProcessTableFile \"$dir/apache/fcgid/shm\""
				# As the shipped vhost sets it: fcntl locks give EDEADLK between threads.
				echo "Mutex pthread fcgid-pipe fcgid-proctbl"
			else
				echo "LoadModule cgid_module /usr/lib/apache2/modules/mod_cgid.so"
				echo "ScriptSock \"$dir/apache/cgid.sock\""
			fi
			apache_base_conf "$dir" "$port"
			cat <<EOF
# wrk keeps its connections: no close after 100 requests (the default) in the middle of a run.
MaxKeepAliveRequests 0
KeepAliveTimeout 30
StartServers 1
ServerLimit 4
ThreadsPerChild 64
MaxRequestWorkers 256
EOF
			sed "s/@PORT@/$port/g" "$site"
		} >"$dir/apache/httpd.conf"
		: >"$dir/error.log"
		[ "$(id -u)" = 0 ] && chown -R www-data:www-data "$dir"
		taskset -c "$SUT_CPU" "${as[@]}" "$APACHE" -f "$dir/apache/httpd.conf" -DFOREGROUND >"$dir/apache.out" 2>&1 &
		apid=$!
		PIDS+=("$apid")
		if wait_up "$apid" "http://127.0.0.1:$port/v1/models"; then
			responders_of "$apid" >"$dir/responder.pids"
			serving "$inst" "$apid" "$port"
			return
		fi
		not_started "$inst" "$apid" Apache "$dir/apache.out" "$dir/error.log"
	done
	die "$inst: Apache found no free port"
}

# ---- targets ----
# target_<t>_label: a row title. target_<t>_start INST UPSTREAM: start instance INST whose upstream
# is the fake at UPSTREAM (http://127.0.0.1:PORT), setting URL_<INST> (and DIR_/LPID_ for lighttpd).
# target_<t>_upstream=0: the target calls no upstream (no +20 ms run). target_<t>_verify INST:
# optional check after the runs that the target really did its work.

target_fake_label="fake upstream called directly"
target_fake_start() { set_var "URL_$1" "$2/openai/v1/chat/completions"; }

target_fixed_label="lighttpd + FastCGI responder returning a fixed body"
target_fixed_upstream=0
target_fixed_start() { start_lighttpd "$1" "$BIN/fcgi_fixed" "FCGI_THREADS=$THREADS"; }

target_bare_label="lighttpd + bare relay (per-thread keep-alive libcurl)"
target_bare_start() {
	start_lighttpd "$1" "$BIN/bare_relay" "FCGI_THREADS=$THREADS" \
		"BARE_RELAY_UPSTREAM=$2/openai/v1/chat/completions" "OPENAI_API_KEY=$API_KEY"
}

target_router_label="lighttpd + llm-router"
router_config() { bench_router_config "$1" "$THREADS"; }
target_router_start() {
	local dir=$TMP/$1
	mkdir -p "$dir/data"
	router_config "$dir"
	local env=("LLM_ROUTER_CONFIG=$dir/llm-router.conf" "LLM_ROUTER_HOME=$dir"
		"OPENAI_API_KEY=$API_KEY" "OPENAI_BASE_URL=$2/openai/v1")
	env "${env[@]}" "$BIN/llm-router" check-config "$dir/llm-router.conf" >"$dir/check-config.out" 2>&1 ||
		die "router configuration rejected: $(cat "$dir/check-config.out")"
	start_lighttpd "$1" "$BIN/llm-router" "${env[@]}"
}
target_router_scraped_label="lighttpd + llm-router, scraped every second"
# The router target's set-up with an admin key, and the scrape path mounted beside /v1 when it is
# outside it. run_wrk runs the scraper (scrape_start) during each run of the instance.
target_router_scraped_scraped=1
target_router_scraped_start() {
	local dir=$TMP/$1 code
	mkdir -p "$dir/data"
	router_config "$dir"
	local env=("LLM_ROUTER_CONFIG=$dir/llm-router.conf" "LLM_ROUTER_HOME=$dir"
		"OPENAI_API_KEY=$API_KEY" "OPENAI_BASE_URL=$2/openai/v1" "LLM_ROUTER_ADMIN_KEY=$ADMIN_KEY")
	case $SCRAPE_PATH in
	/v1/*) start_lighttpd "$1" "$BIN/llm-router" "${env[@]}" ;;
	*) LIGHTTPD_MOUNTS=$SCRAPE_PATH start_lighttpd "$1" "$BIN/llm-router" "${env[@]}" ;;
	esac
	code=$(curl -s -o "$dir/scrape.first" -w '%{http_code}' --max-time 10 \
		-H "Authorization: Bearer $ADMIN_KEY" "$(scrape_url "$1")") || true
	[ "$code" = 200 ] ||
		die "$1: GET $SCRAPE_PATH with the admin key got HTTP $code: $(head -c 300 "$dir/scrape.first" 2>/dev/null)"
}
target_router_scraped_verify() {
	target_router_verify "$@"
	local log=$TMP/scrape-$1.log n bad
	[ -s "$log" ] || die "$1: no scrape was made during its runs"
	n=$(wc -l <"$log")
	bad=$(awk '$1 != 200' "$log" | wc -l)
	[ "$bad" = 0 ] ||
		die "$1: $bad of $n scrapes of $SCRAPE_PATH did not answer 200: $(awk '$1 != 200 { print $1 }' "$log" | sort | uniq -c | tr '\n' ' ')$(sort "$TMP/scrape-$1.err" 2>/dev/null | uniq -c | tr '\n' ' ')"
	echo "$1: all $n scrapes of $SCRAPE_PATH during its runs answered 200" >>"$TMP/checks.txt"
}

# scrape_url INST: the scrape endpoint of a router instance.
scrape_url() {
	local u
	u=$(get_var "URL_$1")
	echo "${u%/v1/chat/completions}$SCRAPE_PATH"
}

# scrape_start INST RUN / scrape_stop: a scraper on the load CPU (tests/bench/scraper.c: one small
# process, as a shell loop of curl, date and sleep would spawn five a second there, enough to
# show in wrk's p99 at concurrency 1) that GETs the instance's scrape URL with the admin key once
# a second (each scrape starts a second after the previous one, or at once after a scrape that
# took longer), a line per scrape in $TMP/scrape-INST.log: HTTP status (000: no answer), seconds,
# bytes, RUN (the run's connections, c1 or c64). A scrape in progress when it is stopped finishes
# and is logged.
scrape_start() {
	local url hostport log=$TMP/scrape-$1.log run=$2
	url=$(scrape_url "$1")
	hostport=${url#http://}
	hostport=${hostport%%/*}
	taskset -c "$LOAD_CPU" "$BIN/scraper" "${hostport%:*}" "${hostport##*:}" "/${url#http://*/}" \
		"$ADMIN_KEY" "$run" >>"$log" 2>>"$TMP/scrape-$1.err" &
	SCRAPER_PID=$!
	PIDS+=("$SCRAPER_PID")
}
scrape_stop() {
	local keep=() p
	kill "$SCRAPER_PID" 2>/dev/null || true
	wait "$SCRAPER_PID" 2>/dev/null || true
	# Reaped: its PID may be reused, stop_all must not signal it.
	for p in "${PIDS[@]}"; do [ "$p" = "$SCRAPER_PID" ] || keep+=("$p"); done
	PIDS=("${keep[@]}")
	SCRAPER_PID=
}

target_router_nobudget_label="lighttpd + llm-router, budgets off"
# The same router with budget.enabled = false: what the budget reservation costs.
target_router_nobudget_start() {
	local dir=$TMP/$1
	mkdir -p "$dir/data"
	router_config "$dir"
	sed -i -e "s/^\([[:space:]]*enabled[[:space:]]*=\)[[:space:]]*true;/\1 false;/" "$dir/llm-router.conf"
	grep -q "^[[:space:]]*enabled = false;" "$dir/llm-router.conf" || die "could not turn budgets off"
	local env=("LLM_ROUTER_CONFIG=$dir/llm-router.conf" "LLM_ROUTER_HOME=$dir"
		"OPENAI_API_KEY=$API_KEY" "OPENAI_BASE_URL=$2/openai/v1")
	start_lighttpd "$1" "$BIN/llm-router" "${env[@]}"
}
target_router_nobudget_verify() { target_router_verify "$@"; }

target_router_nolog_label="lighttpd + llm-router, budgets and request log off"
# storage.request_log = false and budget.enabled = false: what the request log costs.
target_router_nolog_start() {
	local dir=$TMP/$1
	mkdir -p "$dir/data"
	router_config "$dir"
	sed -i -e "s/^\([[:space:]]*enabled[[:space:]]*=\)[[:space:]]*true;/\1 false;/" \
		-e "s/^\([[:space:]]*request_log[[:space:]]*=\)[[:space:]]*true;/\1 false;/" "$dir/llm-router.conf"
	grep -q "^[[:space:]]*request_log = false;" "$dir/llm-router.conf" || die "could not turn the request log off"
	local env=("LLM_ROUTER_CONFIG=$dir/llm-router.conf" "LLM_ROUTER_HOME=$dir"
		"OPENAI_API_KEY=$API_KEY" "OPENAI_BASE_URL=$2/openai/v1")
	start_lighttpd "$1" "$BIN/llm-router" "${env[@]}"
}

target_router_anthropic_label="lighttpd + llm-router, Anthropic-backed model"
target_router_anthropic_model=claude-haiku-4-5
# The same router, asked for claude-haiku-4-5: the Anthropic adapter translates the request to the
# Messages API and the answer (JSON or event stream) back to OpenAI's shape.
target_router_anthropic_start() {
	local dir=$TMP/$1
	mkdir -p "$dir/data"
	router_config "$dir"
	local env=("LLM_ROUTER_CONFIG=$dir/llm-router.conf" "LLM_ROUTER_HOME=$dir"
		"ANTHROPIC_API_KEY=$API_KEY" "ANTHROPIC_BASE_URL=$2/anthropic")
	start_lighttpd "$1" "$BIN/llm-router" "${env[@]}"
}
target_router_anthropic_verify() { target_router_verify "$@"; }

target_router_fallback_label="lighttpd + llm-router, first model of the chain always failing"
target_router_fallback_model=deepseek-chat
# deepseek-chat's chain is deepseek-chat -> gpt-4o-mini -> ...: DeepSeek's base URL answers every
# call with 503, so each request makes a failed attempt and then a second one on gpt-4o-mini (another
# provider: no backoff pause). Cooldown is off, so the failing model is tried every time.
target_router_fallback_start() {
	local dir=$TMP/$1
	mkdir -p "$dir/data"
	router_config "$dir"
	sed -i -e "s/^\([[:space:]]*failures[[:space:]]*=\)[[:space:]]*[0-9]*;/\1 0;/" "$dir/llm-router.conf"
	grep -q "^[[:space:]]*failures = 0;" "$dir/llm-router.conf" || die "could not turn cooldown off"
	local env=("LLM_ROUTER_CONFIG=$dir/llm-router.conf" "LLM_ROUTER_HOME=$dir"
		"DEEPSEEK_API_KEY=$API_KEY" "DEEPSEEK_BASE_URL=$2/status/503"
		"OPENAI_API_KEY=$API_KEY" "OPENAI_BASE_URL=$2/openai/v1")
	start_lighttpd "$1" "$BIN/llm-router" "${env[@]}"
}
target_router_fallback_verify() {
	target_router_verify "$@"
	local db fell
	db=$(get_var "DIR_$1")/data/llm_logs.db
	command -v sqlite3 >/dev/null 2>&1 || return 0
	fell=$(sqlite3 "file:$db?mode=ro" "SELECT count(*) FROM request_log WHERE status = 200 AND attempts = 2 AND model = 'gpt-4o-mini' AND fallback_from = 'deepseek-chat'")
	local ok
	ok=$(sqlite3 "file:$db?mode=ro" "SELECT count(*) FROM request_log WHERE status = 200")
	[ "$fell" = "$ok" ] || die "$1: only $fell of $ok answers came from the fallback after a failed first attempt"
	echo "$1: every one of the $ok answers was a fallback (2 attempts, deepseek-chat failed with 503)" >>"$TMP/checks.txt"
}

target_router_fcgid_label="Apache + mod_fcgid + llm-router"
# The router with the shipped vhost (apache/llm-router-fcgid.conf): one request at a time per
# process, up to FcgidMaxProcessesPerClass (16) processes. Provider key and URL in llm-router.env.
router_env_file() { # router_env_file DIR UPSTREAM
	(umask 077 && printf 'OPENAI_API_KEY=%s\nOPENAI_BASE_URL=%s/openai/v1\n' "$API_KEY" "$2" >"$1/llm-router.env")
}
target_router_fcgid_pause_s=2
# Tolerant: in about one make bench in three a burst of a few upstream connections from freshly
# spawned mod_fcgid processes fails at once ("Couldn't connect", cause not found yet), the model
# cools down and some answers are 503 or cut: counted and reported rather than fatal.
target_router_fcgid_tolerant=1
target_router_fcgid_start() {
	local dir=$TMP/$1
	mkdir -p "$dir/data"
	router_config "$dir"
	router_env_file "$dir" "$2"
	sed -e 's/<VirtualHost \*:80>/<VirtualHost 127.0.0.1:@PORT@>/' \
		-e "s|/usr/local/bin/llm-router|$BIN/llm-router|g" \
		-e "s|/usr/local/etc/llm-router/llm-router.conf|$dir/llm-router.conf|g" \
		-e "s|/var/lib/llm-router|$dir|g" "$ROOT/apache/llm-router-fcgid.conf" >"$dir/site.conf"
	start_apache "$1" 1 "$dir/site.conf"
}
target_router_fcgid_verify() { target_router_verify "$@"; }

target_router_cgi_label="Apache + mod_cgid + llm-router as plain CGI"
# A shared host without mod_fcgid, laid out as the README's shared hosting: the shipped
# www/.htaccess and the binary in DIR/www, the configuration in DIR/conf, found from the binary.
target_router_cgi_tolerant=1
target_router_cgi_start() {
	local dir=$TMP/$1
	mkdir -p "$dir/data" "$dir/conf" "$dir/www"
	router_config "$dir/conf"
	router_env_file "$dir/conf" "$2"
	cp "$ROOT/www/.htaccess" "$dir/www/"
	cp -r "$ROOT/www/errors" "$dir/www/"
	cp "$BIN/llm-router" "$dir/www/llm-router.fcgi"
	cat >"$dir/site.conf" <<EOF
DocumentRoot "$dir/www"
<Directory "$dir/www">
  AllowOverride Options FileInfo AuthConfig
  Require all granted
</Directory>
EOF
	start_apache "$1" 0 "$dir/site.conf"
}
target_router_cgi_verify() { target_router_verify "$@"; }

# cgi_startup: the binary's own cost per request as a CGI program, without a web server: N runs
# with a CGI environment on the SUT CPU, for GET /v1/models and for a chat completion against the
# fast fake upstream (the request log written each time). Sets CGI_MODELS_MS and CGI_CHAT_MS
# (mean wall time per run, fork and exec by the shell included).
cgi_startup() {
	local bin=$TMP/router_cgi/www/llm-router.fcgi n=200 t0 t1 body
	local as=()
	[ "$(id -u)" = 0 ] && as=(setpriv --reuid=www-data --regid=www-data --clear-groups)
	body=$(body_file router_cgi nonstream)
	local env=(GATEWAY_INTERFACE=CGI/1.1 SERVER_PROTOCOL=HTTP/1.1 REMOTE_ADDR=127.0.0.1)
	t0=$(date +%s%N)
	for _ in $(seq $n); do
		env "${env[@]}" REQUEST_METHOD=GET REQUEST_URI=/v1/models taskset -c "$SUT_CPU" "${as[@]}" \
			"$bin" </dev/null >/dev/null || die "CGI run of GET /v1/models failed"
	done
	t1=$(date +%s%N)
	CGI_MODELS_MS=$(awk -v a="$t0" -v b="$t1" -v n=$n 'BEGIN { printf "%.2f", (b - a) / n / 1e6 }')
	t0=$(date +%s%N)
	for _ in $(seq $n); do
		env "${env[@]}" REQUEST_METHOD=POST REQUEST_URI=/v1/chat/completions CONTENT_TYPE=application/json \
			CONTENT_LENGTH="$(stat -c %s "$body")" taskset -c "$SUT_CPU" "${as[@]}" "$bin" <"$body" |
			grep -q '"chat.completion"' || die "CGI run of a chat completion failed"
	done
	t1=$(date +%s%N)
	CGI_CHAT_MS=$(awk -v a="$t0" -v b="$t1" -v n=$n 'BEGIN { printf "%.2f", (b - a) / n / 1e6 }')
}

target_router_verify() {
	local inst=$1 dir db rows ok sent
	dir=$(get_var "DIR_$inst")
	db=$dir/data/llm_logs.db
	[ -s "$db" ] || die "$inst: the request log $db does not exist"
	if command -v sqlite3 >/dev/null 2>&1; then
		read -r rows ok < <(sqlite3 -separator ' ' "file:$db?mode=ro" \
			"SELECT count(*), coalesce(sum(status = 200), 0) FROM request_log" 2>/dev/null) || true
	elif command -v python3 >/dev/null 2>&1; then
		read -r rows ok < <(python3 -c 'import sqlite3,sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(*c.execute("SELECT count(*), coalesce(sum(status = 200), 0) FROM request_log").fetchone())' "$db") || true
	else
		note "$inst: neither sqlite3 nor python3 is installed; request log rows not counted"
		return
	fi
	sent=$(get_var "SENT_$inst")
	[ -n "${rows:-}" ] || die "$inst: cannot read the request log $db"
	[ "$rows" -gt 0 ] || die "$inst: the request log $db has no rows"
	[ "$ok" -ge "${sent:-0}" ] ||
		die "$inst: the request log has $ok rows with status 200, fewer than the $sent answers counted by wrk"
	local wal=0
	[ -f "$db-wal" ] && wal=$(stat -c %s "$db-wal")
	echo "$inst: $rows request-log rows ($ok with status 200) for $sent answers counted by wrk (database $(($(stat -c %s "$db") / 1048576)) MB, WAL file $((wal / 1048576)) MB)" >>"$TMP/checks.txt"
}

target_var() { get_var "target_$1_$2"; }
has_upstream() { [ "$(target_var "$1" upstream)" != 0 ]; }

# ---- wrk ----

cat >"$TMP/post.lua" <<'EOF'
-- POST the body in $BENCH_BODY_FILE; at the end print one machine-readable line.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or "bench-key")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
# body_file INST MODE: the request body file for an instance (its target's model, else $MODEL).
body_file() {
	local t=${1%_slow} model f
	model=$(target_var "$t" model)
	model=${model:-$MODEL}
	f=$TMP/body-$model-$2.json
	if [ ! -f "$f" ]; then
		if [ "$2" = stream ]; then
			printf '{"model":"%s","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}' "$model" >"$f"
		else
			printf '{"model":"%s","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64}' "$model" >"$f"
		fi
	fi
	echo "$f"
}

# settle: write back dirty pages (the request logs written by the previous target) so that their
# writeback does not land in the next target's measurement.
settle() {
	sync
	sleep 0.2
}

# cpu_ticks -> "BUSY TOTAL OURS" in clock ticks, to tell whether other work on the machine
# overlapped a run. BUSY: user + nice + system + steal time of all CPUs (irq and softirq time, which
# is mostly the benchmark's own loopback traffic, is left out); TOTAL: all CPU time that passed;
# OURS: CPU time of the benchmark's live processes plus everything it ran and reaped (wrk, curl...).
cpu_ticks() {
	local p
	{
		head -n 1 /proc/stat
		# Every web server's whole tree: processes spawned on demand (mod_fcgid, CGI) included,
		# and with the CPU time of the children they reaped (CGI processes).
		for p in "${PIDS[@]}" $(for v in ${!LPID_*}; do descendants_of "${!v}" | cut -d' ' -f1; done); do
			[ -r "/proc/$p/stat" ] && echo "P $(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null)"
		done
		echo "S $(sed 's/.*) //' "/proc/$$/stat")"
	} | awk '
		$1 == "cpu" { busy = $2 + $3 + $4 + $9; for (i = 2; i <= 9; i++) total += $i }
		$1 == "P" { ours += $13 + $14 + $15 + $16 }   # utime, stime, cutime, cstime
		$1 == "S" { ours += $13 + $14 + $15 + $16 }   # and the reaped children: cutime, cstime
		END { print busy, total, ours }'
}

# run_wrk INST MODE CONNECTIONS DURATION: sets W_RPS, W_P50, W_P99 (ms) and W_OTHER; dies on any
# non-2xx answer or socket error. Runs in the calling shell (not in $(...)) so that it can stop the
# script and count the answers per instance.
run_wrk() {
	local inst=$1 mode=$2 c=$3 d=$4 url out line kv
	local requests=0 duration_us=1 p50_us=0 p99_us=0 connect=0 read=0 write=0 status=0 timeout=0
	url=$(get_var "URL_$inst")
	out=$TMP/wrk-$inst-$mode-c$c.out
	local before after scraped
	scraped=$(target_var "${inst%_slow}" scraped)
	before=$(cpu_ticks)
	[ "$scraped" != 1 ] || scrape_start "$inst" "c$c"
	BENCH_BODY_FILE=$(body_file "$inst" "$mode") BENCH_API_KEY=$API_KEY \
		taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$c" -d"$d" --timeout 10s --latency -s "$TMP/post.lua" "$url" >"$out" 2>&1 ||
		die "wrk failed against $inst ($mode): $(cat "$out")"
	[ "$scraped" != 1 ] || scrape_stop
	after=$(cpu_ticks)
	# Share of all CPUs used by anything but the benchmark during the run, in percent.
	W_OTHER=$(awk -v a="$before" -v b="$after" 'BEGIN { split(a, x); split(b, y)
		f = (y[1] - x[1]) - (y[3] - x[3]); if (f < 0) f = 0
		printf "%.0f", (y[2] > x[2] ? 100 * f / (y[2] - x[2]) : 0) }')
	line=$(grep '^BENCH ' "$out") || die "wrk printed no result against $inst ($mode): $(cat "$out")"
	for kv in ${line#BENCH }; do
		case ${kv%%=*} in
		requests | duration_us | p50_us | p99_us | connect | read | write | status | timeout)
			[[ ${kv#*=} =~ ^[0-9]+$ ]] && printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
		esac
	done
	local bad=""
	[ "$status" = 0 ] || bad="$status answers were not 2xx ($(grep -i 'non-2xx' "$out" | tr -s ' '))"
	[ $((connect + read + write + timeout)) = 0 ] ||
		bad="${bad:+$bad; }socket errors: connect $connect, read $read, write $write, timeout $timeout"
	if [ -n "$bad" ]; then
		# A target marked tolerant (the Apache set-ups, see target_router_fcgid_tolerant) has its
		# failures counted and reported in bold; any other target stops the benchmark.
		[ "$(target_var "${inst%_slow}" tolerant)" = 1 ] || die "$inst ($mode, $c connections): $bad"
		echo "$inst ($mode, $c connections, $d): $bad" >>"$TMP/failures.txt"
	fi
	[ "$requests" -gt 0 ] || die "$inst ($mode, $c connections): no request completed"
	set_var "SENT_$inst" $(($(get_var "SENT_$inst" | sed 's/^$/0/') + requests - status))
	W_RPS=$(awk -v n="$requests" -v us="$duration_us" 'BEGIN { printf "%.1f", n / (us / 1e6) }')
	W_P50=$(awk -v v="$p50_us" 'BEGIN { printf "%.3f", v / 1000 }')
	W_P99=$(awk -v v="$p99_us" 'BEGIN { printf "%.3f", v / 1000 }')
	# mod_fcgid stops the processes whose requests wrk cut off at the end of the run and spawns
	# new ones: give that a moment, so that it does not overlap the next run.
	local pause
	pause=$(target_var "${inst%_slow}" pause_s)
	[ -z "$pause" ] || sleep "$pause"
}

# smoke INST MODE: one request by curl; the answer must be a 200 with the expected shape.
smoke() {
	local inst=$1 mode=$2 url out code
	url=$(get_var "URL_$inst")
	out=$TMP/smoke-$inst-$mode
	code=$(curl -s -N -o "$out.body" -D "$out.head" -w '%{http_code}' --max-time 10 \
		-H 'Content-Type: application/json' -H "Authorization: Bearer $API_KEY" \
		--data-binary "@$(body_file "$inst" "$mode")" "$url") || true
	[ "$code" = 200 ] || die "$inst ($mode): smoke request got HTTP $code: $(head -c 600 "$out.body" 2>/dev/null)"
	if [ "$mode" = stream ]; then
		grep -q '"chat.completion.chunk"' "$out.body" && grep -q '^data: \[DONE\]' "$out.body" &&
			grep -q '"usage":{' "$out.body" ||
			die "$inst ($mode): the stream lacks chunks, usage or [DONE]: $(head -c 600 "$out.body")"
	else
		grep -q '"chat.completion"' "$out.body" && grep -q '"usage"' "$out.body" ||
			die "$inst ($mode): not a chat.completion: $(head -c 600 "$out.body")"
	fi
	set_var "SENT_$inst" $(($(get_var "SENT_$inst" | sed 's/^$/0/') + 1))
}

# sample_rss INST: record the responders' VmRSS (each, and their sum) and lighttpd's, in kB.
sample_rss() {
	local inst=$1 lpid dir p each="" sum=0 r n=0
	lpid=$(get_var "LPID_$inst")
	[ -n "$lpid" ] || return 0
	dir=$(get_var "DIR_$inst")
	responders_of "$lpid" >"$dir/responder.now"
	sort -u "$dir/responder.now" "$dir/responder.pids" -o "$dir/responder.pids"
	for p in $(cat "$dir/responder.now"); do
		r=$(rss_kb "$p")
		each="$each${each:+ }$r"
		sum=$((sum + r))
		n=$((n + 1))
	done
	record "$inst.rss_each" "$each"
	record "$inst.rss_sum" "$sum"
	record "$inst.nproc" "$n"
	record "$inst.rss_lighttpd" "$(rss_kb "$lpid")"
}

# ---- run ----

T_START=$(date +%s)
BUSY_BEFORE=$(cpu_busy)
if [ "$BUSY_BEFORE" -gt 10 ]; then
	note "WARNING: the CPUs were $BUSY_BEFORE % busy before the run: other work on this machine makes the numbers noisy"
fi
STAMP=$(date +%Y%m%d-%H%M%S)
echo "bench: system under test (the web server and its FastCGI/CGI processes) pinned to CPU $SUT_CPU; wrk and the fake upstreams pinned to CPU $LOAD_CPU ($NCPU CPUs online)"
echo "bench: targets: $TARGETS; modes: $MODES; $ROUNDS rounds of $DURATION per run; $CONNS connections; $THREADS responder threads; upstream delay $DELAY_MS ms"

start_fake fast
start_fake slow --delay-ms "$DELAY_MS"

INSTANCES=
for t in $TARGETS; do
	"target_${t}_start" "$t" "$FAKE_fast"
	INSTANCES="$INSTANCES $t"
	if has_upstream "$t"; then
		"target_${t}_start" "${t}_slow" "$FAKE_slow"
		INSTANCES="$INSTANCES ${t}_slow"
	fi
done
for inst in $INSTANCES; do
	for mode in $MODES; do smoke "$inst" "$mode"; done
done
DBDIR_FS=$(stat -f -c %T "$TMP")
echo "bench: all targets answer; request logs and temporary files on $TMP ($DBDIR_FS)"

# Warm-up: one second of load per instance and mode, not recorded.
for inst in $INSTANCES; do
	for mode in $MODES; do
		settle
		run_wrk "$inst" "$mode" "$CONNS" 1s
	done
done

for round in $(seq "$ROUNDS"); do
	echo "bench: round $round/$ROUNDS"
	for mode in $MODES; do
		for t in $TARGETS; do
			settle
			run_wrk "$t" "$mode" 1 "$DURATION"
			p50=$W_P50 p99=$W_P99 other=$W_OTHER
			record other "$W_OTHER $round $t $mode c1"
			record "$t.$mode.p50" "$p50"
			record "$t.$mode.p99" "$p99"
			set_var "P50_$t" "$p50"
			set_var "P99_$t" "$p99"
			settle
			run_wrk "$t" "$mode" "$CONNS" "$DURATION"
			rps=$W_RPS
			record other "$W_OTHER $round $t $mode c$CONNS"
			[ "$W_OTHER" -gt "$other" ] && other=$W_OTHER
			record "$t.$mode.rps" "$rps"
			slow="-"
			if has_upstream "$t"; then
				settle
				run_wrk "${t}_slow" "$mode" "$CONNS" "$DURATION"
				slow=$W_RPS
				record other "$W_OTHER $round ${t}_slow $mode c$CONNS"
				[ "$W_OTHER" -gt "$other" ] && other=$W_OTHER
				record "$t.$mode.rps_slow" "$slow"
			fi
			printf '  %-7s %-9s c1: p50 %7.3f ms, p99 %7.3f ms   c%s: %8.0f req/s   c%s +%s ms: %4s req/s   other CPU use: %s %%\n' \
				"$t" "$mode" "$p50" "$p99" "$CONNS" "$rps" "$CONNS" "$DELAY_MS" "${slow%.*}" "$other"
		done
		for t in $TARGETS; do
			[ "$t" = fake ] && continue
			has_upstream "$t" || continue
			record "$t.$mode.add50" "$(awk -v a="$(get_var "P50_$t")" -v b="$P50_fake" 'BEGIN { print a - b }')"
			record "$t.$mode.add99" "$(awk -v a="$(get_var "P99_$t")" -v b="$P99_fake" 'BEGIN { print a - b }')"
		done
	done
	for inst in $INSTANCES; do sample_rss "$inst"; done
	record fake.rss_fast "$(rss_kb "$FAKEPID_fast")"
	record fake.rss_slow "$(rss_kb "$FAKEPID_slow")"
done

CGI_MODELS_MS= CGI_CHAT_MS=
case " $TARGETS " in *" router_cgi "*) cgi_startup ;; esac

for t in $TARGETS; do
	if declare -F "target_${t}_verify" >/dev/null; then
		"target_${t}_verify" "$t"
		has_upstream "$t" && "target_${t}_verify" "${t}_slow"
	fi
done

# ---- report ----

fmt() { # fmt VALUE DECIMALS -> value or an em dash
	[ -n "$1" ] && awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }' || printf '—'
}
ratio() { # ratio A B -> A/B with 2 decimals, or an em dash
	if [ -n "$1" ] && [ -n "$2" ] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
		awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
	else
		printf '—'
	fi
}
mb() { [ -n "$1" ] && awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }' || printf '—'; }
has_target() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }

REPORT=$TMP/report.md
{
	echo "# LLM Router benchmark, $(date '+%Y-%m-%d %H:%M:%S')"
	echo
	echo "Medians of $ROUNDS interleaved rounds, $DURATION per run. The web server (lighttpd or Apache) and its FastCGI/CGI processes pinned to CPU $SUT_CPU;"
	echo "wrk and the fake upstreams on CPU $LOAD_CPU. Responders: $THREADS threads, one process. Model $MODEL (openai provider); the Anthropic-backed row asks for claude-haiku-4-5."
	echo "Latency: wrk -t1 -c1; added = target minus the fake upstream called directly, same round."
	echo "Throughput: wrk -t1 -c$CONNS; \"+${DELAY_MS} ms\": upstream answering ${DELAY_MS} ms after each request (ceilings: $CONNS connections / ${DELAY_MS} ms = $((CONNS * 1000 / DELAY_MS)) req/s;"
	echo "a responder blocking one of its $THREADS threads per request: $THREADS / ${DELAY_MS} ms = $((THREADS * 1000 / DELAY_MS)) req/s)."
	echo "Ratios: against the bare relay (throughput target/bare; latency target-added / bare-added)."
	echo "CPU busy before the run: $BUSY_BEFORE %. Request logs on $DBDIR_FS. $(uname -sr); $(lighttpd -v 2>&1 | head -n 1); $(curl --version | head -n 1 | cut -d' ' -f1-2)."
	for mode in $MODES; do
		echo
		case $mode in
		nonstream) echo "## Non-stream" ;;
		stream) echo "## Stream (stream_options.include_usage)" ;;
		*) echo "## $mode" ;;
		esac
		echo
		echo "| target | p50 ms | p99 ms | added p50 ms | added p99 ms | added vs bare relay (p50 / p99) | req/s @$CONNS | vs bare relay | req/s @$CONNS, upstream +${DELAY_MS} ms | vs bare relay |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for t in $TARGETS; do
			p50=$(get "$t.$mode.p50") p99=$(get "$t.$mode.p99")
			a50=$(get "$t.$mode.add50") a99=$(get "$t.$mode.add99")
			rps=$(get "$t.$mode.rps") rpss=$(get "$t.$mode.rps_slow")
			b50=$(get "bare.$mode.add50") b99=$(get "bare.$mode.add99")
			brps=$(get "bare.$mode.rps") brpss=$(get "bare.$mode.rps_slow")
			if [ -n "$a50" ] && [ "$t" != bare ] && has_target bare; then
				lr="$(ratio "$a50" "$b50") / $(ratio "$a99" "$b99")"
			else
				lr="—"
			fi
			rr=$([ "$t" != bare ] && has_target bare && ratio "$rps" "$brps" || printf '—')
			rrs=$([ "$t" != bare ] && has_target bare && ratio "$rpss" "$brpss" || printf '—')
			echo "| $(target_var "$t" label) | $(fmt "$p50" 3) | $(fmt "$p99" 3) | $(fmt "$a50" 3) | $(fmt "$a99" 3) | $lr | $(fmt "$rps" 0) | $rr | $(fmt "$rpss" 0) | $rrs |"
		done
	done
	echo
	echo "## Memory (VmRSS after all the load, MB)"
	echo
	echo "| target | responder processes | responders, each | responders, total | web server | upstream +${DELAY_MS} ms: responders total / web server |"
	echo "|---|---:|---:|---:|---:|---:|"
	for t in $TARGETS; do
		[ "$t" = fake ] && continue
		each=$(last "$t.rss_each")
		each_mb=$(for k in $each; do mb "$k"; printf ' '; done)
		slow="—"
		has_upstream "$t" && slow="$(mb "$(last "${t}_slow.rss_sum")") / $(mb "$(last "${t}_slow.rss_lighttpd")")"
		echo "| $(target_var "$t" label) | $(last "$t.nproc") | ${each_mb% } | $(mb "$(last "$t.rss_sum")") | $(mb "$(last "$t.rss_lighttpd")") | $slow |"
	done
	echo
	echo "Fake upstreams (load CPU): $(mb "$(last fake.rss_fast)") MB, with --delay-ms $DELAY_MS: $(mb "$(last fake.rss_slow)") MB."
	if has_target router && has_target bare; then
		echo
		echo "## Router against the aim (docs: PERFORMANCE.md)"
		echo
		for mode in $MODES; do
			l50=$(ratio "$(get "router.$mode.add50")" "$(get "bare.$mode.add50")")
			l99=$(ratio "$(get "router.$mode.add99")" "$(get "bare.$mode.add99")")
			tr=$(ratio "$(get "router.$mode.rps")" "$(get "bare.$mode.rps")")
			trs=$(ratio "$(get "router.$mode.rps_slow")" "$(get "bare.$mode.rps_slow")")
			verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN { if (v == "—") print "n/a"; else if ((op == "le" && v <= lim) || (op == "ge" && v >= lim)) print "meets"; else print "MISSES" }'; }
			echo "- $mode: added latency router/bare p50 $l50, p99 $l99 (aim ≤ 1.5: $(verdict "$l50" 1.5 le) / $(verdict "$l99" 1.5 le)); throughput router/bare $tr (aim ≥ 0.70: $(verdict "$tr" 0.70 ge)), with upstream +${DELAY_MS} ms $trs"
		done
		rss=$(last router.rss_sum)
		echo "- memory: router responders $(mb "$rss") MB in $(last router.nproc) process(es) (aim ≤ 16 MB per $THREADS-thread responder: $(awk -v v="$rss" -v n="$(last router.nproc)" 'BEGIN { print (v / 1024 <= 16 * n) ? "meets" : "MISSES" }'))"
	fi
	if has_target router && has_target router_scraped; then
		echo
		echo "## Prometheus scrape"
		echo
		echo "router_scraped is the router row's set-up with an admin key, scraped once a second during each of its runs by a scraper on the load CPU (tests/bench/scraper.c: GET $SCRAPE_PATH with the admin key, a new connection each time); the differences are against the router row, same rounds."
		for mode in $MODES; do
			delta() { awk -v a="$(get "router_scraped.$mode.$1")" -v b="$(get "router.$mode.$1")" 'BEGIN { printf "%+.3f", a - b }'; }
			echo "- $mode: added p50 $(fmt "$(get "router_scraped.$mode.add50")" 3) ms scraped, $(fmt "$(get "router.$mode.add50")" 3) ms not ($(delta add50) ms); added p99 $(fmt "$(get "router_scraped.$mode.add99")" 3) / $(fmt "$(get "router.$mode.add99")" 3) ms ($(delta add99) ms); req/s @$CONNS $(fmt "$(get "router_scraped.$mode.rps")" 0) scraped, $(fmt "$(get "router.$mode.rps")" 0) not ($(ratio "$(get "router_scraped.$mode.rps")" "$(get "router.$mode.rps")")), with upstream +${DELAY_MS} ms $(fmt "$(get "router_scraped.$mode.rps_slow")" 0) / $(fmt "$(get "router.$mode.rps_slow")" 0)"
		done
		# Every scrape of the target's instances (warm-up runs included): status, seconds, bytes, run.
		cat "$TMP"/scrape-router_scraped.log "$TMP"/scrape-router_scraped_slow.log 2>/dev/null | sort -g -k2,2 | awk '
			{ t[NR] = $2 * 1000; if ($1 == 200) ok++; else bad[$1]++; if ($3 > maxb) maxb = $3
			  if ($4 == "c1") t1[++n1] = $2 * 1000 }
			END {
				if (NR == 0) { print "- scrapes: none were made"; exit }
				other = ""
				for (c in bad) other = other sprintf(", %d answered %s", bad[c], c)
				printf "- scrapes: %d during the runs of router_scraped (warm-up included), %d answered 200%s; each took %.1f ms (median), %.1f ms at most; during the concurrency-1 runs %.1f ms (median of %d); answers of up to %d bytes\n", NR, ok, other, t[int((NR + 1) / 2)], t[NR], (n1 ? t1[int((n1 + 1) / 2)] : 0), n1, maxb
			}'
	fi
	if has_target router && has_target router_nobudget; then
		echo
		echo "## Budgets"
		echo
		echo "router reserves each request's estimated cost before the upstream call (a transaction in the writer thread's group commit) and settles it with the log row; router_nobudget does neither."
		for mode in $MODES; do
			echo "- $mode: added p50 $(get "router.$mode.add50") ms with budgets, $(get "router_nobudget.$mode.add50") ms without (p99 $(get "router.$mode.add99") / $(get "router_nobudget.$mode.add99") ms); req/s @$CONNS $(get "router.$mode.rps") with, $(get "router_nobudget.$mode.rps") without ($(ratio "$(get "router.$mode.rps")" "$(get "router_nobudget.$mode.rps")"))"
		done
	fi
	if has_target router_nobudget && has_target router_nolog; then
		echo
		echo "## Request log"
		echo
		echo "router_nobudget logs every request (a row committed by the writer thread before the response ends, WAL checkpoints in the background); router_nolog writes none. Both without budgets."
		for mode in $MODES; do
			echo "- $mode: logged requests/s @$CONNS sustained $(get "router_nobudget.$mode.rps") (without the log $(get "router_nolog.$mode.rps"), $(ratio "$(get "router_nobudget.$mode.rps")" "$(get "router_nolog.$mode.rps")")); concurrency 1: p99 $(get "router_nobudget.$mode.add99") ms added with the log, $(get "router_nolog.$mode.add99") ms without (p50 $(get "router_nobudget.$mode.add50") / $(get "router_nolog.$mode.add50"))"
		done
	fi
	if has_target router && has_target router_fallback; then
		echo
		echo "## One fallback step"
		echo
		echo "router_fallback answers every request after a failed first attempt (upstream 503 on another provider); the step's cost is its added latency minus the plain router's, same round medians."
		for mode in $MODES; do
			d50=$(awk -v a="$(get "router_fallback.$mode.add50")" -v b="$(get "router.$mode.add50")" 'BEGIN { printf "%.3f", a - b }')
			d99=$(awk -v a="$(get "router_fallback.$mode.add99")" -v b="$(get "router.$mode.add99")" 'BEGIN { printf "%.3f", a - b }')
			echo "- $mode: one fallback step adds $d50 ms at p50 and $d99 ms at p99 (the failed call to the fake upstream included); throughput $(ratio "$(get "router_fallback.$mode.rps")" "$(get "router.$mode.rps")") of the plain router's"
		done
	fi
	if has_target router && { has_target router_fcgid || has_target router_cgi; }; then
		echo
		echo "## Apache: mod_fcgid and plain CGI"
		echo
		echo "The same router and configuration as the lighttpd row. mod_fcgid sends one request at a time to a process (up to FcgidMaxProcessesPerClass 16 processes, spawned on demand); plain CGI starts a process per request."
		for mode in $MODES; do
			if has_target router_fcgid; then
				echo "- $mode: Apache + mod_fcgid $(get "router_fcgid.$mode.rps") req/s @$CONNS against lighttpd's $(get "router.$mode.rps") ($(ratio "$(get "router_fcgid.$mode.rps")" "$(get "router.$mode.rps")")), with upstream +${DELAY_MS} ms $(get "router_fcgid.$mode.rps_slow") against $(get "router.$mode.rps_slow") ($(ratio "$(get "router_fcgid.$mode.rps_slow")" "$(get "router.$mode.rps_slow")")); added p50 $(get "router_fcgid.$mode.add50") ms against $(get "router.$mode.add50") ms"
			fi
			if has_target router_cgi && has_target router_fcgid; then
				echo "- $mode: plain CGI adds $(awk -v a="$(get "router_cgi.$mode.add50")" -v b="$(get "router_fcgid.$mode.add50")" 'BEGIN { printf "%.3f", a - b }') ms per request at p50 over mod_fcgid through the same Apache (process start, configuration, database open); $(get "router_cgi.$mode.rps") req/s @$CONNS ($(ratio "$(get "router_cgi.$mode.rps")" "$(get "router_fcgid.$mode.rps")") of mod_fcgid's), with upstream +${DELAY_MS} ms $(get "router_cgi.$mode.rps_slow")"
			fi
		done
		if [ -n "$CGI_MODELS_MS" ]; then
			echo "- the binary alone as a CGI program, no web server (200 runs each, pinned to CPU $SUT_CPU): $CGI_MODELS_MS ms per GET /v1/models, $CGI_CHAT_MS ms per chat completion (upstream call and request-log row included)"
		fi
	fi
	if [ -s "$TMP/failures.txt" ]; then
		echo
		echo "**Failed requests in tolerant targets (their figures include these runs):**"
		sed 's/^/- /' "$TMP/failures.txt"
	fi
	if [ -s "$TMP/checks.txt" ]; then
		echo
		if [ -s "$TMP/failures.txt" ]; then
			echo "Checks: every run of the other targets all 2xx, no socket errors."
		else
			echo "Checks: every run all 2xx, no socket errors."
		fi
		sed 's/^/- /' "$TMP/checks.txt"
	fi
	echo
	read -r other_med other_max other_n other_where < <(sort -n -k1,1 "$RES/other" | awk '
		{ v[NR] = $1; if ($1 > 5) n++; w = $2 "/" $3 "/" $4 "/" $5 }
		END { print v[int((NR + 1) / 2)], v[NR], n + 0, w }')
	if [ "$other_max" -gt 0 ]; then
		echo "CPU used by other processes during the measured runs: median $other_med %, at most $other_max % (round/target/mode/connections $other_where)."
	else
		echo "CPU used by other processes during the measured runs: none."
	fi
	if [ "$other_n" -gt 0 ]; then
		echo "**Other work took more than 5 % of the CPUs in $other_n of $(wc -l <"$RES/other") measured runs: those runs are disturbed (see the per-round lines); the medians absorb a disturbed round, not more.**"
	fi
	echo
	echo "Run time: $(($(date +%s) - T_START)) s."
} >"$REPORT"

echo
cat "$REPORT"

for t in $TARGETS; do
	[ "$t" = fake ] && continue
	for inst in $t ${t}_slow; do
		dir=$(get_var "DIR_$inst")
		[ -n "$dir" ] && [ -s "$dir/error.log" ] || continue
		n=$(grep -ciE 'error|warn' "$dir/error.log" || true)
		if [ "$n" -gt 0 ]; then
			echo
			echo "bench: $inst: $n error/warning lines in its web server's error log, the first ones:"
			grep -m 5 -iE 'error|warn' "$dir/error.log"
		fi
	done
done

mkdir -p "$ROOT/bench-results"
cp "$REPORT" "$ROOT/bench-results/bench-$STAMP.md"
echo
echo "bench: written to bench-results/bench-$STAMP.md; took $(($(date +%s) - T_START)) s"

if [ "$RUN_INFLIGHT" = 1 ]; then
	# The machine to itself: this run's web servers and fakes stop first (and are forgotten, so
	# that the exit does not signal their PIDs again).
	stop_all
	PIDS=()
	rm -f "$TMP"/*/responder.pids
	echo
	BUILD=$BUILD BENCH_REPORT=$ROOT/bench-results/bench-$STAMP.md "$ROOT/tests/bench/inflight.sh"
fi
