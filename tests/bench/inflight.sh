#!/usr/bin/env bash
# inflight.sh - calls in flight: 1,024 concurrent streaming calls against a slow streaming upstream,
# the router with its shipped configuration next to an nginx proxy, measured in the same run.
#
# A real completion takes seconds, so what a gateway must hold is calls in flight. The upstream is
# the fake upstream (tests/bench/fake_upstream.c) with --chunk-delay-ms $BENCH_INFLIGHT_CHUNK_MS
# (250): every streaming call sends its 8 content events 250 ms apart and lasts about 2.75 s. Real
# providers are HTTPS: a local TLS front stands in for them, nginx (Debian's) on 127.0.0.1 with a
# self-signed certificate made at start-up with the openssl CLI (CN 127.0.0.1, SAN IP:127.0.0.1 and
# DNS:localhost; ECDSA P-256), http2 and HTTP/1.1 offered by ALPN, proxying to the fake over
# keep-alive connections without buffering (events go through as they come). The router trusts it
# through upstream.ca_file = a copy of the system CA bundle (/etc/ssl/certs/ca-certificates.crt)
# with that certificate appended: the whole bundle is parsed, as with a real provider.
#
# Targets (each run with the same load, one after the other, each started just before its run and
# stopped right after it, so that one target's leftovers never load the next):
#   nginx        the ceiling: an nginx reverse proxy (plain HTTP, one hop, keep-alive upstream
#                connections, no buffering) in front of the fake over plain HTTP
#   router       lighttpd + llm-router with the SHIPPED configuration: lighttpd/llm-router.conf
#                (production: its fastcgi.server block, min/max-procs, listen-backlog, streaming
#                settings) and conf/llm-router.conf (server.threads, server.max_threads), the
#                openai provider's base URL = https://127.0.0.1:PORT/v1, the TLS front
#   router_http  the same router with the openai provider over plain HTTP straight to the fake:
#                what TLS costs the router
#   apache_proxy Apache 2.4 (event MPM) + mod_proxy_fcgi with the SHIPPED files: the vhost
#                apache/llm-router-proxy-fcgi.conf (its ProxyPass), the MPM sizing
#                apache/llm-router-mpm.conf, and the router as apache/llm-router.service runs it
#                (`llm-router serve --listen SOCKET`, the unit's LimitNOFILE), both as www-data,
#                Apache with the open-file limit Debian's apachectl gives it (8,192); the HTTPS upstream
# Only what a benchmark needs is changed in the copies: paths (binary, socket, configuration, home,
# logs, error pages), callers anonymous (routing.auth_mode = "none", as in bench.sh), daily budgets
# raised so that budget accounting stays on but never refuses, upstream.ca_file, and the provider
# key and base URL in llm-router.env beside the configuration copy. lighttpd is started with the
# soft open-file limit systemd gives a service (1,024), so the descriptors come from the shipped
# server.max-fds, as in production (a missing one is reported as a finding).
#
# Load: wrk -t1 -c$BENCH_INFLIGHT_CONNECTIONS (1024) --timeout 30s with a Lua script POSTing a
# streaming chat completion (model gpt-4o-mini, "stream":true, stream_options.include_usage) to
# /v1/chat/completions, for $BENCH_INFLIGHT_WARMUP (6s, not recorded), then, once a single call
# takes its normal time again (the warm-up's cut-off calls drained), for $BENCH_INFLIGHT_DURATION
# (20s). Each connection's first call starts at a random moment within the first call length
# (wrk's delay(), not counted in latency): calls then end spread evenly over time instead of in
# waves of all 1,024 at once, whose count in a run would depend on how many whole waves fit.
# calls/s = 2xx answers per second over the whole seconds from one call length after the start
# to the end (the steady state). Every run's non-2xx answers and socket errors (connect, read,
# write, timeout) are counted and reported. wrk's latency percentiles are over the calls that
# completed within the run: a call still queued at the end is not in them, so the report also
# gives the mean time per call by Little's law (calls in flight / calls/s) and checks the p99 bound
# against the larger of the two.
#
# Memory: VmRSS of the web server and all of its child processes (nginx master + workers; lighttpd
# + its FastCGI responders), summed, sampled every second over the second half of the measured run
# while the calls are in flight; the peak is reported (with the thread count at that moment).
#
# The call's own length: the median of 3 single streaming calls made straight to the fake.
#
# Bounds printed as PASS/FAIL for each router target (figures, not a verdict on the run: the script
# exits 0 whatever they are, and fails only when a target cannot be started, does not answer a
# smoke call, or completes no call at all):
#   calls/s router / calls/s nginx >= 0.9
#   max(p99, Little's mean) router / the call's own length <= 1.3
#   peak RSS (web server + responders) <= 256 MB
#   errors (non-2xx, socket errors, timeouts) = 0
#
# Placement on a 2-core machine: the system under test (nginx ceiling; lighttpd and its responders)
# pinned to CPU $BENCH_SUT_CPU (0); wrk, the fake upstream and the TLS front pinned to CPU
# $BENCH_LOAD_CPU (1). Every process started runs with the open-file limit raised to
# $BENCH_NOFILE (65536; the hard limit if that cannot be had).
#
# Run: `make bench-inflight`, or `BENCH_ONLY=inflight make bench`; `make bench` runs it after the
# other targets. Alone: BUILD=build tests/bench/inflight.sh (needs build/llm-router and
# build/fake_upstream). Results are printed and written to bench-results/inflight-<timestamp>.md,
# or appended to $BENCH_REPORT when given (bench.sh passes its own report).
#
# Environment:
#   BUILD                          build directory holding llm-router and fake_upstream
#   BENCH_INFLIGHT_DURATION=20s    measured run per target (wrk duration syntax: 20s, 1m)
#   BENCH_INFLIGHT_WARMUP=6s       warm-up run per target, same load, not recorded
#   BENCH_INFLIGHT_CONNECTIONS=1024
#   BENCH_INFLIGHT_CHUNK_MS=250    the fake's pause between stream events
#   BENCH_INFLIGHT_TARGETS="nginx router router_http"
#   BENCH_SUT_CPU=0 BENCH_LOAD_CPU=1 BENCH_NOFILE=65536
#   BENCH_KEEP_TMP=1               keep the temporary directory (configs, logs, wrk output)
#   BENCH_REPORT=FILE              append the report to FILE instead of a new file
# shellcheck disable=SC2034,SC2154,SC2015
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) BIN=$BUILD ;; *) BIN=$ROOT/$BUILD ;; esac
DURATION=${BENCH_INFLIGHT_DURATION:-20s}
WARMUP=${BENCH_INFLIGHT_WARMUP:-6s}
CONNS=${BENCH_INFLIGHT_CONNECTIONS:-1024}
CHUNK_MS=${BENCH_INFLIGHT_CHUNK_MS:-250}
TARGETS=${BENCH_INFLIGHT_TARGETS:-nginx router router_http apache_proxy}
SUT_CPU=${BENCH_SUT_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
NOFILE=${BENCH_NOFILE:-65536}
WRK_TIMEOUT=30s
LIGHTTPD=${LIGHTTPD:-$(command -v lighttpd || echo /usr/sbin/lighttpd)}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
APACHE=${APACHE:-$(command -v apache2 || echo /usr/sbin/apache2)}
WRK=${WRK:-wrk}
SYSTEM_CA=${BENCH_SYSTEM_CA:-/etc/ssl/certs/ca-certificates.crt}
MODEL=gpt-4o-mini
API_KEY=bench-key
# The bounds
MIN_RPS_RATIO=0.9
MAX_P99_RATIO=1.3
MAX_RSS_MB=256

die() {
	echo "inflight: FAILED: $*" >&2
	exit 1
}
# shellcheck source=tests/bench/common.sh
. "$ROOT/tests/bench/common.sh"
note() { echo "inflight: $*" >&2; }

for tool in "$WRK" "$LIGHTTPD" "$NGINX" openssl taskset curl ps setpriv; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (tests/tools/deps.sh bench installs it)"
done
for b in llm-router fake_upstream; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing (run: make BUILD=$BUILD bench-inflight)"
done
case " $TARGETS " in *" apache_proxy "*)
	[ -x "$APACHE" ] || die "$APACHE is not installed (tests/tools/deps.sh bench installs apache2)"
	[ -r /usr/lib/apache2/modules/mod_proxy_fcgi.so ] || die "mod_proxy_fcgi is missing (Debian package apache2)" ;;
esac
[ -r "$SYSTEM_CA" ] || die "the system CA bundle $SYSTEM_CA is missing (Debian package ca-certificates)"
NCPU=$(nproc)
[ "$SUT_CPU" -lt "$NCPU" ] && [ "$LOAD_CPU" -lt "$NCPU" ] || die "CPUs $SUT_CPU and $LOAD_CPU are not both present ($NCPU online)"
KNOWN_TARGETS="nginx router router_http apache_proxy"
for t in $TARGETS; do
	case " $KNOWN_TARGETS " in *" $t "*) ;; *) die "unknown target '$t' (known: $KNOWN_TARGETS)" ;; esac
done

# seconds DURATION -> whole seconds (wrk's syntax: 20, 20s, 2m, 1h)
seconds() {
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}
DURATION_S=$(seconds "$DURATION")
WARMUP_S=$(seconds "$WARMUP")
[[ $DURATION_S =~ ^[0-9]+$ ]] && [ "$DURATION_S" -ge 4 ] || die "BENCH_INFLIGHT_DURATION=$DURATION: at least 4s"
[[ $WARMUP_S =~ ^[0-9]+$ ]] || die "BENCH_INFLIGHT_WARMUP=$WARMUP: not a duration"

# Every process started from here on inherits this open-file limit.
if ! ulimit -n "$NOFILE" 2>/dev/null; then
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	note "open-file limit $NOFILE not allowed here; using the hard limit $(ulimit -n)"
fi
NOFILE_NOW=$(ulimit -n)
[ "$NOFILE_NOW" = unlimited ] && NOFILE_NOW=1048576
[ "$NOFILE_NOW" -ge $((CONNS * 2 + 64)) ] ||
	die "open-file limit $NOFILE_NOW is too low for $CONNS connections (raise the hard limit)"
# The open-file limit systemd gives a service that sets no LimitNOFILE (soft 1,024; the hard limit
# stays high, 524,288): the web servers start with it as their soft limit, as they do from Debian's
# units, and raise it themselves where they are configured to.
SERVICE_NOFILE=1024
# Debian's apache2.service starts Apache through apachectl, which raises the soft limit (as root) to
# what APACHE_ULIMIT_MAX_FILES says in /etc/apache2/envvars, 8,192 when it is unset.
APACHE_NOFILE=$(sed -n 's/.*APACHE_ULIMIT_MAX_FILES:-ulimit -n \([0-9]*\).*/\1/p' /usr/sbin/apache2ctl 2>/dev/null | head -n 1)
APACHE_NOFILE=${APACHE_NOFILE:-8192}

# The system under test sees only what the benchmark sets: no real provider keys, no demo URL.
unset LLM_ROUTER_DEMO_URL LLM_ROUTER_CONFIG LLM_ROUTER_HOME OPENAI_BASE_URL ANTHROPIC_API_KEY \
	GEMINI_API_KEY DEEPSEEK_API_KEY OPENROUTER_API_KEY GROQ_API_KEY OPENAI_API_KEY

TMP=$(mktemp -d "${TMPDIR:-/tmp}/llm-router-inflight.XXXXXX")
chmod 755 "$TMP"
ROOTS=() # process trees to stop (each PID with all its descendants)

# descendants_of PID: the PIDs of every process below PID.
descendants_of() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END {
			for (p in parent) {
				q = p
				while (q in parent && q != root && q > 1) q = parent[q]
				if (q == root && p != root) print p
			}
		}'
}

# stop_tree PID: SIGTERM to PID and everything below it (nginx workers, lighttpd's responders,
# which lighttpd leaves running when it stops), SIGKILL to what is left after 3 s.
stop_tree() {
	local root=$1 all p alive
	all="$root $(descendants_of "$root" | tr '\n' ' ')"
	for p in $all; do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 30); do
		alive=0
		for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in $all; do kill -9 "$p" 2>/dev/null || true; done
	wait "$root" 2>/dev/null || true
	# Forgotten once stopped: the exit must not signal a PID the system may have given to another.
	local keep=()
	for p in "${ROOTS[@]}"; do [ "$p" = "$root" ] || keep+=("$p"); done
	ROOTS=("${keep[@]}")
}

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	[ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
	for p in "${ROOTS[@]}"; do stop_tree "$p"; done
	if [ "${BENCH_KEEP_TMP:-0}" = 1 ] || [ $rc -ne 0 ]; then
		note "temporary files kept in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
threads_of() { awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- the request ----

BODY=$TMP/body.json
printf '{"model":"%s","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}' "$MODEL" >"$BODY"

cat >"$TMP/post.lua" <<'EOF'
-- POST the body in $BENCH_BODY_FILE. Each connection's first call waits a random 0..$BENCH_STAGGER_MS
-- ms (not counted in its latency), so that calls end spread over time rather than in waves of all
-- connections at once. Completed 2xx answers are counted per wall-clock second; at the end one
-- machine-readable line gives wrk's figures and the completions in each second of the run.
local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_API_KEY") or "bench-key")

local threads = {}
function setup(thread) table.insert(threads, thread) end

local conns = tonumber(os.getenv("BENCH_CONNS") or "0")
local stagger = tonumber(os.getenv("BENCH_STAGGER_MS") or "0")
local first = 0
start_s = 0
per_s = {}
function init(args)
  math.randomseed(os.time())
  start_s = os.time()
end
function delay()
  if first < conns then
    first = first + 1
    return math.random(0, stagger)
  end
  return 0
end
function response(status, headers, body)
  if status >= 200 and status < 300 then
    local s = os.time()
    per_s[s] = (per_s[s] or 0) + 1
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local start, counts = nil, {}
  for _, t in ipairs(threads) do
    local s0 = t:get("start_s")
    if start == nil or s0 < start then start = s0 end
    for s, n in pairs(t:get("per_s")) do counts[s] = (counts[s] or 0) + n end
  end
  local secs = {}
  for s, n in pairs(counts) do table.insert(secs, (s - start) .. ":" .. n) end
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f max_us=%.0f connect=%d read=%d write=%d status=%d timeout=%d per_s=%s\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(secs, ",")))
end
EOF

# stream_call URL OUT [curl options]: one streaming call; prints its HTTP status and total time (s).
stream_call() {
	local url=$1 out=$2
	shift 2
	curl -s -N -o "$out.body" -D "$out.head" -w '%{http_code} %{time_total}\n' --max-time 120 "$@" \
		-H 'Content-Type: application/json' -H "Authorization: Bearer $API_KEY" \
		--data-binary "@$BODY" "$url" || echo "000 0"
}

# smoke NAME URL [curl options]: one streaming call must be a 200 with chunks, usage and [DONE].
smoke() {
	local name=$1 url=$2 out=$TMP/smoke-$1 code t
	shift 2
	read -r code t < <(stream_call "$url" "$out" "$@")
	[ "$code" = 200 ] || die "$name: smoke call got HTTP $code: $(head -c 600 "$out.body" 2>/dev/null)"
	grep -q '"chat.completion.chunk"' "$out.body" && grep -q '^data: \[DONE\]' "$out.body" &&
		grep -q '"usage":{' "$out.body" ||
		die "$name: the stream lacks chunks, usage or [DONE]: $(head -c 600 "$out.body")"
	echo "$t"
}

# ---- the slow upstream and the TLS front (load CPU) ----

FAKE_OUT=$TMP/fake.port
taskset -c "$LOAD_CPU" "$BIN/fake_upstream" --host 127.0.0.1 --port 0 --chunk-delay-ms "$CHUNK_MS" \
	>"$FAKE_OUT" 2>"$TMP/fake.log" &
FAKE_PID=$!
ROOTS+=("$FAKE_PID")
for _ in $(seq 100); do
	[ -s "$FAKE_OUT" ] && break
	sleep 0.05
done
FAKE_PORT=$(sed -n 's/.*"port":\([0-9]*\).*/\1/p' "$FAKE_OUT")
[ -n "$FAKE_PORT" ] || die "the fake upstream did not start: $(cat "$TMP/fake.log")"
FAKE=http://127.0.0.1:$FAKE_PORT

# The call's own length: the median of 3 single calls straight to the fake.
for i in 1 2 3; do smoke fake "$FAKE/v1/chat/completions"; done >"$TMP/fake.times"
CALL_S=$(sort -g "$TMP/fake.times" | sed -n 2p | awk '{ printf "%.3f", $1 }')
STAGGER_MS=$(awk -v l="$CALL_S" 'BEGIN { printf "%.0f", l * 1000 }')

# nginx_conf DIR: the parts every nginx instance shares (its own paths, limits, logs).
nginx_head() {
	local dir=$1
	mkdir -p "$dir/temp"
	[ "$(id -u)" = 0 ] && echo "user root;"
	cat <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE_NOW;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
daemon off;
events {
  worker_connections 8192;
  multi_accept on;
}
EOF
}
nginx_http_common() {
	local dir=$1
	cat <<EOF
  access_log off;
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
  keepalive_timeout 75s;
  keepalive_requests 100000;
  upstream fake {
    server 127.0.0.1:$FAKE_PORT;
    keepalive 2048;
    keepalive_requests 100000;
    keepalive_timeout 60s;
  }
EOF
}
nginx_proxy_location() {
	cat <<'EOF'
    location / {
      proxy_pass http://fake;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }
EOF
}

# start_nginx NAME CPU SCHEME(http|https) -> sets NGINX_PID_<NAME>, NGINX_PORT_<NAME>
start_nginx() {
	local name=$1 cpu=$2 scheme=$3 dir=$TMP/$1 port pid listen curlopt=()
	mkdir -p "$dir"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		if [ "$scheme" = https ]; then
			listen="listen 127.0.0.1:$port ssl http2;
    ssl_certificate $TMP/tls/cert.pem;
    ssl_certificate_key $TMP/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 1h;"
			curlopt=(--cacert "$TMP/tls/cert.pem")
		else
			listen="listen 127.0.0.1:$port;"
		fi
		{
			nginx_head "$dir"
			echo "http {"
			nginx_http_common "$dir"
			echo "  server {"
			echo "    $listen"
			nginx_proxy_location
			echo "  }"
			echo "}"
		} >"$dir/nginx.conf"
		: >"$dir/error.log"
		taskset -c "$cpu" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/nginx.out" 2>&1 &
		pid=$!
		ROOTS+=("$pid")
		if wait_up "$pid" "$scheme://127.0.0.1:$port/" "${curlopt[@]}"; then
			printf -v "NGINX_PID_$name" '%s' "$pid"
			printf -v "NGINX_PORT_$name" '%s' "$port"
			return
		fi
		stop_tree "$pid"
		grep -qi "address already in use" "$dir/nginx.out" "$dir/error.log" 2>/dev/null ||
			die "$name: nginx did not start: $(tail -n 5 "$dir/nginx.out" "$dir/error.log")"
	done
	die "$name: nginx found no free port"
}

# The TLS front's certificate, and the CA file the router is given: the system bundle + it.
mkdir -p "$TMP/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" -subj "/CN=127.0.0.1" \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -addext "basicConstraints=critical,CA:TRUE" \
	>"$TMP/tls/openssl.out" 2>&1 || die "openssl could not make a certificate: $(cat "$TMP/tls/openssl.out")"
cat "$SYSTEM_CA" "$TMP/tls/cert.pem" >"$TMP/tls/ca-bundle.pem"
CA_CERTS=$(grep -c 'BEGIN CERTIFICATE' "$TMP/tls/ca-bundle.pem")

start_nginx tls "$LOAD_CPU" https
TLS=https://127.0.0.1:$NGINX_PORT_tls
smoke tls "$TLS/v1/chat/completions" --cacert "$TMP/tls/ca-bundle.pem" >/dev/null
TLS_H2=$(curl -s -o /dev/null -w '%{http_version}' --http2 --cacert "$TMP/tls/ca-bundle.pem" "$TLS/" || true)
[ "$TLS_H2" = 2 ] || note "the TLS front did not negotiate HTTP/2 with curl (got '$TLS_H2')"

# ---- targets ----

target_nginx_label="nginx reverse proxy (ceiling)"
target_nginx_upstream="HTTP"
target_nginx_start() {
	start_nginx ceiling "$SUT_CPU" http
	T_PID=$NGINX_PID_ceiling
	T_URL=http://127.0.0.1:$NGINX_PORT_ceiling/v1/chat/completions
}

# shipped_lighttpd DIR -> DIR/llm-router-lighttpd.conf: lighttpd/llm-router.conf with the
# installed paths replaced by the instance's (each replacement checked).
shipped_lighttpd() {
	local dir=$1 src=$ROOT/lighttpd/llm-router.conf f s
	sed -e "s|\"/usr/local/bin/llm-router\"|\"$BIN/llm-router\"|" \
		-e "s|\"/run/lighttpd/llm-router.sock\"|\"$dir/llm-router.sock\"|" \
		-e "s|\"/usr/local/etc/llm-router/llm-router.conf\"|\"$dir/llm-router.conf\"|" \
		-e "s|\"/var/lib/llm-router\"|\"$dir\"|" \
		-e "s|\"/var/log/lighttpd/llm-router.log\"|\"$dir/router.log\"|" \
		-e "s|\"/usr/local/share/llm-router/lighttpd/errors/json-\"|\"$dir/errors/json-\"|" \
		"$src" >"$dir/llm-router-lighttpd.conf"
	for s in "$BIN/llm-router" "$dir/llm-router.sock" "$dir/llm-router.conf" "\"$dir\"" "$dir/router.log" "$dir/errors/json-"; do
		grep -qF "$s" "$dir/llm-router-lighttpd.conf" || die "could not set $s in the copy of lighttpd/llm-router.conf"
	done
	mkdir -p "$dir/errors"
	for f in "$ROOT"/www/errors/*.json; do
		s=$(basename "$f" .json)
		cp "$f" "$dir/errors/json-$s.html"
	done
}

# router_config DIR UPSTREAM_BASE CA_FILE: the shipped conf/llm-router.conf, threads untouched.
router_config() {
	local dir=$1 base=$2 ca=$3
	sed -e "s/\(daily_budget_usd[[:space:]]*=\)[[:space:]]*[0-9.]*;/\1 1000000000.0;/" \
		-e 's/^\([[:space:]]*auth_mode[[:space:]]*=\).*;/\1 "none";/' \
		-e "s|^\([[:space:]]*ca_file[[:space:]]*=\)[[:space:]]*\"[^\"]*\";|\1 \"$ca\";|" \
		"$ROOT/conf/llm-router.conf" >"$dir/llm-router.conf"
	grep -q "^[[:space:]]*ca_file = \"$ca\";" "$dir/llm-router.conf" || die "could not set upstream.ca_file in the router configuration copy"
	grep -q '^[[:space:]]*auth_mode = "none";' "$dir/llm-router.conf" || die "could not set routing.auth_mode in the router configuration copy"
	(umask 077 && printf 'OPENAI_API_KEY=%s\nOPENAI_BASE_URL=%s\n' "$API_KEY" "$base" >"$dir/llm-router.env")
	"$BIN/llm-router" check-config "$dir/llm-router.conf" >"$dir/check-config.out" 2>&1 ||
		die "router configuration rejected: $(cat "$dir/check-config.out")"
}

# start_router NAME UPSTREAM_BASE CA_FILE: lighttpd with the shipped router block on the SUT CPU.
start_router() {
	local name=$1 dir=$TMP/$1 port lpid
	mkdir -p "$dir/data" "$dir/docroot"
	router_config "$dir" "$2" "$3"
	shipped_lighttpd "$dir"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		cat >"$dir/lighttpd.conf" <<EOF
# The bench's base (Debian's lighttpd.conf sets no descriptor or connection limit either), then
# the shipped lighttpd/llm-router.conf with its paths replaced.
server.document-root = "$dir/docroot"
server.bind = "127.0.0.1"
server.port = $port
server.errorlog = "$dir/error.log"
server.pid-file = "$dir/lighttpd.pid"
include "$dir/llm-router-lighttpd.conf"
EOF
		"$LIGHTTPD" -tt -f "$dir/lighttpd.conf" >"$dir/lighttpd.check" 2>&1 ||
			die "$name: lighttpd rejects its configuration: $(cat "$dir/lighttpd.check")"
		: >"$dir/error.log"
		# systemd's default open-file limit for a service: the shipped server.max-fds must raise it.
		(ulimit -S -n "$SERVICE_NOFILE" && exec taskset -c "$SUT_CPU" "$LIGHTTPD" -D -f "$dir/lighttpd.conf") >"$dir/lighttpd.out" 2>&1 &
		lpid=$!
		ROOTS+=("$lpid")
		if wait_up "$lpid" "http://127.0.0.1:$port/v1/models"; then
			T_PID=$lpid
			T_URL=http://127.0.0.1:$port/v1/chat/completions
			T_DIR=$dir
			T_NOTE="lighttpd started with an open-file limit of $SERVICE_NOFILE, raised by the shipped server.max-fds to $(awk '/^Max open files/ { print $4 }' "/proc/$lpid/limits" 2>/dev/null || echo "?")"
			return
		fi
		stop_tree "$lpid"
		grep -qi "address already in use" "$dir/lighttpd.out" "$dir/error.log" 2>/dev/null ||
			die "$name: lighttpd did not start: $(tail -n 5 "$dir/lighttpd.out" "$dir/error.log")"
	done
	die "$name: lighttpd found no free port"
}

target_router_label="lighttpd + llm-router, shipped configuration"
target_router_upstream="HTTPS (system CA bundle + 1)"
target_router_start() { start_router router "$TLS/v1" "$TMP/tls/ca-bundle.pem"; }

target_router_http_label="lighttpd + llm-router, shipped configuration"
target_router_http_upstream="HTTP"
target_router_http_start() { start_router router_http "$FAKE/v1" ""; }

# start_apache_proxy NAME UPSTREAM_BASE CA_FILE: the router as apache/llm-router.service runs it,
# behind Apache + mod_proxy_fcgi with apache/llm-router-proxy-fcgi.conf and
# apache/llm-router-mpm.conf (paths and port replaced, each replacement checked), both on the SUT
# CPU, both as www-data (Apache will not serve as root; the router's socket is mode 0660).
start_apache_proxy() {
	local name=$1 dir=$TMP/$1 port rpid apid nofile s m
	local as=()
	[ "$(id -u)" = 0 ] && as=(setpriv --reuid=www-data --regid=www-data --clear-groups)
	mkdir -p "$dir/data" "$dir/run" "$dir/apache" "$dir/errors"
	router_config "$dir" "$2" "$3"
	cp "$ROOT"/www/errors/*.json "$dir/errors/"
	nofile=$(sed -n 's/^LimitNOFILE=\([0-9]*\).*/\1/p' "$ROOT/apache/llm-router.service" | head -n 1)
	[ -n "$nofile" ] || nofile=$SERVICE_NOFILE
	grep -q '^ExecStart=.* serve --listen /run/llm-router/router.sock' "$ROOT/apache/llm-router.service" ||
		die "$name: apache/llm-router.service does not run 'serve --listen /run/llm-router/router.sock'"
	[ "$(id -u)" = 0 ] && chown -R www-data:www-data "$dir"
	(ulimit -n "$nofile" && exec env LLM_ROUTER_CONFIG="$dir/llm-router.conf" LLM_ROUTER_HOME="$dir" \
		taskset -c "$SUT_CPU" "${as[@]}" "$BIN/llm-router" serve --listen "$dir/run/router.sock") \
		>"$dir/router.out" 2>&1 &
	rpid=$!
	ROOTS+=("$rpid")
	for _ in $(seq 100); do
		[ -S "$dir/run/router.sock" ] && break
		kill -0 "$rpid" 2>/dev/null || die "$name: the router did not start: $(tail -n 5 "$dir/router.out")"
		sleep 0.05
	done
	[ -S "$dir/run/router.sock" ] || die "$name: the router made no socket: $(tail -n 5 "$dir/router.out")"
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		{
			for m in mpm_event authz_core alias mime proxy proxy_fcgi; do
				echo "LoadModule ${m}_module /usr/lib/apache2/modules/mod_$m.so"
			done
			apache_base_conf "$dir" "$port"
			# As Debian's apache2.conf sets them.
			printf 'KeepAlive On\nMaxKeepAliveRequests 100\nKeepAliveTimeout 5\n'
			cat "$ROOT/apache/llm-router-mpm.conf"
			sed -e "s|<VirtualHost \*:80>|<VirtualHost *:$port>|" \
				-e "s|unix:/run/llm-router/router.sock|unix:$dir/run/router.sock|" \
				-e "s|/usr/local/share/llm-router/www/errors|$dir/errors|g" \
				"$ROOT/apache/llm-router-proxy-fcgi.conf"
		} >"$dir/apache/httpd.conf"
		for s in "<VirtualHost *:$port>" "unix:$dir/run/router.sock" "$dir/errors"; do
			grep -qF "$s" "$dir/apache/httpd.conf" || die "$name: could not set $s in the copy of apache/llm-router-proxy-fcgi.conf"
		done
		: >"$dir/error.log"
		[ "$(id -u)" = 0 ] && chown -R www-data:www-data "$dir/apache" "$dir/error.log"
		(ulimit -S -n "$APACHE_NOFILE" && exec taskset -c "$SUT_CPU" "${as[@]}" "$APACHE" -f "$dir/apache/httpd.conf" -DFOREGROUND) \
			>"$dir/apache.out" 2>&1 &
		apid=$!
		ROOTS+=("$apid")
		if wait_up "$apid" "http://127.0.0.1:$port/v1/models"; then
			T_PID="$apid $rpid"
			T_URL=http://127.0.0.1:$port/v1/chat/completions
			T_DIR=$dir
			T_NOTE="Apache started with the open-file limit apachectl gives it, $APACHE_NOFILE, and apache/llm-router-mpm.conf ($(sed -n 's/^  MaxRequestWorkers *\([0-9]*\).*/MaxRequestWorkers \1/p' "$ROOT/apache/llm-router-mpm.conf")); the router with the unit's LimitNOFILE, $nofile"
			return
		fi
		stop_tree "$apid"
		grep -qi "address already in use" "$dir/apache.out" "$dir/error.log" 2>/dev/null ||
			die "$name: Apache did not start: $(tail -n 5 "$dir/apache.out" "$dir/error.log")"
	done
	die "$name: Apache found no free port"
}

target_apache_proxy_label="Apache + mod_proxy_fcgi + llm-router serve, shipped configuration"
target_apache_proxy_upstream="HTTPS (system CA bundle + 1)"
target_apache_proxy_start() { start_apache_proxy apache_proxy "$TLS/v1" "$TMP/tls/ca-bundle.pem"; }

# ---- load ----

# run_wrk NAME DURATION: wrk against T_URL; sets W_REQ W_RPS W_P50 W_P99 W_MAX (s) W_NON2XX
# W_SOCK (connect/read/write) W_TIMEOUT W_LITTLE (s) W_WINDOW (s).
# W_RPS is the rate of 2xx answers in the steady part of the run: the whole seconds from one call
# length after the start (when every connection's first call, started within the first call
# length, can have ended) to the end; over the whole run when it is too short for that.
run_wrk() {
	local name=$1 d=$2 out=$TMP/wrk-$1-$2.out line kv d_s first last
	local requests=0 duration_us=1 p50_us=0 p99_us=0 max_us=0 connect=0 read=0 write=0 status=0 timeout=0 per_s=
	d_s=$(seconds "$d")
	BENCH_BODY_FILE=$BODY BENCH_API_KEY=$API_KEY BENCH_CONNS=$CONNS BENCH_STAGGER_MS=$STAGGER_MS \
		taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$CONNS" -d"$d" --timeout "$WRK_TIMEOUT" --latency -s "$TMP/post.lua" "$T_URL" >"$out" 2>&1 ||
		die "wrk failed against $name: $(cat "$out")"
	line=$(grep '^BENCH ' "$out") || die "wrk printed no result against $name: $(cat "$out")"
	for kv in ${line#BENCH }; do
		case ${kv%%=*} in
		requests | duration_us | p50_us | p99_us | max_us | connect | read | write | status | timeout)
			[[ ${kv#*=} =~ ^[0-9]+$ ]] && printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
		per_s) per_s=${kv#*=} ;;
		esac
	done
	W_REQ=$requests
	W_NON2XX=$status
	W_SOCK="$connect/$read/$write"
	W_SOCKN=$((connect + read + write))
	W_TIMEOUT=$timeout
	first=$(awk -v l="$CALL_S" 'BEGIN { c = int(l); if (c < l) c++; print c + 1 }')
	last=$((d_s - 1))
	if [ $((last - first + 1)) -ge 3 ]; then
		W_WINDOW=$((last - first + 1))
		W_RPS=$(echo "$per_s" | tr ',' '\n' | awk -F: -v a="$first" -v b="$last" '
			NF == 2 && $1 >= a && $1 <= b { n += $2 } END { printf "%.1f", n / (b - a + 1) }')
	else
		W_WINDOW=$(awk -v us="$duration_us" 'BEGIN { printf "%.0f", us / 1e6 }')
		W_RPS=$(awk -v n="$((requests - status))" -v us="$duration_us" 'BEGIN { printf "%.1f", n / (us / 1e6) }')
	fi
	W_LITTLE=$(awk -v c="$CONNS" -v r="$W_RPS" 'BEGIN { if (r > 0) printf "%.2f", c / r; else print "inf" }')
	W_P50=$(awk -v v="$p50_us" 'BEGIN { printf "%.2f", v / 1e6 }')
	W_P99=$(awk -v v="$p99_us" 'BEGIN { printf "%.2f", v / 1e6 }')
	W_MAX=$(awk -v v="$max_us" 'BEGIN { printf "%.2f", v / 1e6 }')
}

# sampler "PID..." FROM_S COUNT OUT: after FROM_S seconds, COUNT times a second, the sum of VmRSS
# (kB), the process count and the thread count of each PID and its descendants, one line each.
sampler() {
	local roots=$1 from=$2 n=$3 out=$4 p r sum procs threads
	sleep "$from"
	for _ in $(seq "$n"); do
		sum=0 procs=0 threads=0
		for p in $(for r in $roots; do echo "$r"; descendants_of "$r"; done); do
			sum=$((sum + $(rss_kb "$p")))
			threads=$((threads + $(threads_of "$p")))
			procs=$((procs + 1))
		done
		echo "$sum $procs $threads" >>"$out"
		sleep 1
	done
}

# drain NAME: after the warm-up, wait until one call takes at most 1.5 x the call's own length
# again (the warm-up's queued and cut-off calls gone), at most 120 s. Prints the time waited.
drain() {
	local name=$1 t0 code t i=0
	t0=$(date +%s)
	while :; do
		i=$((i + 1))
		read -r code t < <(stream_call "$T_URL" "$TMP/drain-$name-$i")
		if [ "$code" = 200 ] && awk -v t="$t" -v c="$CALL_S" 'BEGIN { exit !(t <= 1.5 * c) }'; then
			break
		fi
		if [ $(($(date +%s) - t0)) -ge 120 ]; then
			note "$name: a single call still took ${t}s (HTTP $code) 120 s after the warm-up; measuring anyway"
			break
		fi
		sleep 1
	done
	echo $(($(date +%s) - t0))
}

# ---- run ----

T_START=$(date +%s)
STAMP=$(date +%Y%m%d-%H%M%S)
BUSY_BEFORE=$(cpu_busy)
[ "$BUSY_BEFORE" -le 10 ] ||
	note "WARNING: the CPUs were $BUSY_BEFORE % busy before the run: other work on this machine makes the numbers noisy"
echo "inflight: $CONNS concurrent streaming calls per target, warm-up $WARMUP, measured $DURATION; targets: $TARGETS"
echo "inflight: system under test pinned to CPU $SUT_CPU; wrk, the fake upstream ($FAKE) and the TLS front ($TLS, HTTP/${TLS_H2:-?} by ALPN) on CPU $LOAD_CPU; open-file limit $NOFILE_NOW"
echo "inflight: the call's own length (median of 3 single calls to the fake, events ${CHUNK_MS} ms apart): ${CALL_S} s"

SHIP_PROCS=$(sed -n 's/^[[:space:]]*"max-procs"[[:space:]]*=>[[:space:]]*\([0-9]*\).*/\1/p' "$ROOT/lighttpd/llm-router.conf" | head -n 1)
SHIP_THREADS=$(sed -n 's/^[[:space:]]*threads[[:space:]]*=[[:space:]]*\([0-9]*\);.*/\1/p' "$ROOT/conf/llm-router.conf" | head -n 1)
SHIP_MAXTHREADS=$(sed -n 's/^[[:space:]]*max_threads[[:space:]]*=[[:space:]]*\([0-9]*\);.*/\1/p' "$ROOT/conf/llm-router.conf" | head -n 1)
SHIP_BACKLOG=$(sed -n 's/^[[:space:]]*"listen-backlog"[[:space:]]*=>[[:space:]]*\([0-9]*\).*/\1/p' "$ROOT/lighttpd/llm-router.conf" | head -n 1)
SHIP_MAXFDS=$(grep -hE '^[[:space:]]*server\.max-(fds|connections)' "$ROOT/lighttpd/llm-router.conf" || true)
echo "inflight: shipped router set-up: ${SHIP_PROCS:-?} processes (lighttpd/llm-router.conf max-procs) x server.threads ${SHIP_THREADS:-?} (up to max_threads ${SHIP_MAXTHREADS:-?}) = $((${SHIP_PROCS:-0} * ${SHIP_THREADS:-0}))..$((${SHIP_PROCS:-0} * ${SHIP_MAXTHREADS:-0})) calls at once; FastCGI listen-backlog ${SHIP_BACKLOG:-default}"

FINDINGS=$TMP/findings.txt
: >"$FINDINGS"
if [ -z "$SHIP_MAXFDS" ]; then
	echo "lighttpd/llm-router.conf sets no server.max-fds: lighttpd keeps the open-file limit it is started with ($SERVICE_NOFILE here, as under systemd), and each client streaming through FastCGI takes two descriptors, so fewer than $((SERVICE_NOFILE / 2)) such calls fit at once." >>"$FINDINGS"
fi

for t in $TARGETS; do
	label_var=target_${t}_label
	up_var=target_${t}_upstream
	T_PID='' T_URL='' T_DIR='' T_NOTE=''
	"target_${t}_start"
	smoke_s=$(smoke "$t" "$T_URL")
	note "$t: up ($T_URL), one call ${smoke_s}s; warm-up $WARMUP"
	run_wrk "$t" "$WARMUP"
	echo "warm-up: $W_REQ calls, $W_NON2XX non-2xx, socket errors $W_SOCK, timeouts $W_TIMEOUT" >"$TMP/$t.warmup"
	waited=$(drain "$t")
	note "$t: drained after the warm-up in ${waited}s; measuring $DURATION"
	from=$((DURATION_S / 2))
	: >"$TMP/$t.rss"
	taskset -c "$LOAD_CPU" bash -c "$(declare -f sampler descendants_of rss_kb threads_of); sampler \"$T_PID\" $from $((DURATION_S - from - 1)) $TMP/$t.rss" &
	SAMPLER=$!
	run_wrk "$t" "$DURATION"
	wait "$SAMPLER" 2>/dev/null || true
	SAMPLER=
	read -r rss procs threads < <(sort -n -k1,1 "$TMP/$t.rss" | tail -n 1)
	{
		echo "label=\"${!label_var}\""
		echo "upstream=\"${!up_var}\""
		echo "req=$W_REQ rps=$W_RPS window=$W_WINDOW little=$W_LITTLE p50=$W_P50 p99=$W_P99 max=$W_MAX non2xx=$W_NON2XX sock=$W_SOCK sockn=$W_SOCKN timeout=$W_TIMEOUT"
		echo "rss=${rss:-0} procs=${procs:-0} threads=${threads:-0} drained=$waited"
	} >"$TMP/$t.result"
	[ -z "$T_NOTE" ] || echo "$t: $T_NOTE" >>"$TMP/$t.warmup"
	if [ -n "$T_DIR" ]; then
		grep -c 'connection limit reached' "$T_DIR/error.log" >"$TMP/$t.connlimit" || true
		cp "$T_DIR/error.log" "$TMP/$t.errorlog" 2>/dev/null || true
	fi
	note "$t: $W_RPS calls/s, p50 ${W_P50}s p99 ${W_P99}s, peak RSS $(awk -v v="${rss:-0}" 'BEGIN { printf "%.1f", v / 1024 }') MB in ${procs:-0} processes"
	[ "$W_REQ" -gt "$W_NON2XX" ] || die "$t: no call completed with a 2xx answer in $DURATION ($W_NON2XX non-2xx, socket errors $W_SOCK, timeouts $W_TIMEOUT)"
	for p in $T_PID; do stop_tree "$p"; done
done

# ---- report ----

val() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$TMP/$1.result" | head -n 1; }
label() { sed -n 's/^label="\(.*\)"$/\1/p' "$TMP/$1.result"; }
upstream() { sed -n 's/^upstream="\(.*\)"$/\1/p' "$TMP/$1.result"; }
mb() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "inf") printf "inf"; else if (b > 0) printf "%.2f", a / b; else printf "—" }'; }
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN { if (v == "—" || v == "") print "n/a"; else if (v == "inf") print (op == "le" ? "FAIL" : "PASS"); else if ((op == "le" && v + 0 <= lim + 0) || (op == "ge" && v + 0 >= lim + 0)) print "PASS"; else print "FAIL" }'; }
has() { case " $TARGETS " in *" $1 "*) return 0 ;; esac; return 1; }

REPORT=$TMP/report.md
{
	echo "## Calls in flight ($(date '+%Y-%m-%d %H:%M:%S'))"
	echo
	echo "$CONNS concurrent streaming calls (wrk -t1 -c$CONNS --timeout $WRK_TIMEOUT, POST /v1/chat/completions, stream with include_usage, model $MODEL) held for $DURATION after a $WARMUP warm-up, per target."
	echo "Upstream: the fake with events ${CHUNK_MS} ms apart; the call's own length (median of 3 single calls to it): **${CALL_S} s**."
	echo "HTTPS upstream: nginx $("$NGINX" -v 2>&1 | sed 's|.*/||') on 127.0.0.1 (TLS 1.2/1.3, ECDSA P-256 self-signed, HTTP/${TLS_H2:-?} by ALPN), trusted through upstream.ca_file = the system CA bundle + that certificate ($CA_CERTS certificates)."
	echo "System under test on CPU $SUT_CPU; wrk, the fake and the TLS front on CPU $LOAD_CPU. Router: the shipped lighttpd/llm-router.conf and conf/llm-router.conf (${SHIP_PROCS:-?} processes x ${SHIP_THREADS:-?} threads, up to ${SHIP_MAXTHREADS:-?})."
	echo "CPU busy before the runs (everything started but idle): $BUSY_BEFORE %."
	echo "RSS: the web server and all its child processes, summed, peak of samples taken every second over the second half of the run. Latency over the calls that completed within the run."
	echo
	echo "| target | upstream | calls done | calls/s | p50 s | p99 s | max s | s per call, Little | non-2xx | socket errors c/r/w | timeouts | peak RSS MB | processes / threads |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for t in $TARGETS; do
		echo "| $(label "$t") | $(upstream "$t") | $(val "$t" req) | $(val "$t" rps) | $(val "$t" p50) | $(val "$t" p99) | $(val "$t" max) | $(val "$t" little) | $(val "$t" non2xx) | $(val "$t" sock) | $(val "$t" timeout) | $(mb "$(val "$t" rss)") | $(val "$t" procs) / $(val "$t" threads) |"
	done
	echo
	echo "calls/s: 2xx answers per second over the last $(val "$(echo "$TARGETS" | cut -d' ' -f1)" window) s of the run (each connection's first call starts at a random moment within the first call length, so calls end spread over time, and the window starts once every first call can have ended)."
	echo "p50/p99/max: over the calls completed within the run; a call still waiting at the end is not in them. \"s per call, Little\": $CONNS calls in flight ÷ calls/s, the mean time a call spends at the target (queue included) in the steady state; the p99 bound is checked against the larger of the two."
	for t in router router_http apache_proxy; do
		has "$t" || continue
		echo
		echo "### $(label "$t"), upstream $(upstream "$t"): against the bounds"
		echo
		if has nginx; then
			r=$(ratio "$(val "$t" rps)" "$(val nginx rps)")
			echo "- calls/s vs the nginx proxy: $(val "$t" rps) / $(val nginx rps) = $r (bound ≥ $MIN_RPS_RATIO): **$(verdict "$r" "$MIN_RPS_RATIO" ge)**"
		fi
		p=$(awk -v a="$(val "$t" p99)" -v b="$(val "$t" little)" 'BEGIN { if (b == "inf" || b + 0 > a + 0) print b; else print a }')
		r=$(ratio "$p" "$CALL_S")
		echo "- p99 vs the call's own length: max(p99 $(val "$t" p99), Little $(val "$t" little)) / $CALL_S = $r (bound ≤ $MAX_P99_RATIO): **$(verdict "$r" "$MAX_P99_RATIO" le)**"
		m=$(mb "$(val "$t" rss)")
		echo "- peak RSS, web server + router processes: $m MB (bound ≤ $MAX_RSS_MB MB): **$(verdict "$m" "$MAX_RSS_MB" le)**"
		e=$(($(val "$t" non2xx) + $(val "$t" sockn) + $(val "$t" timeout)))
		echo "- errors: $e (non-2xx $(val "$t" non2xx), socket errors $(val "$t" sock), timeouts $(val "$t" timeout)) (bound 0): **$([ "$e" = 0 ] && echo PASS || echo FAIL)**"
	done
	if has nginx; then
		echo
		echo "The nginx proxy: $(ratio "$(val nginx p99)" "$CALL_S") x the call's own length at p99, $(mb "$(val nginx rss)") MB; the most $CONNS calls of ${CALL_S} s can give: $(awk -v c="$CONNS" -v s="$CALL_S" 'BEGIN { printf "%.0f", c / s }') calls/s."
	fi
	echo
	echo "Warm-up runs and checks:"
	for t in $TARGETS; do
		echo "- $t: $(head -n 1 "$TMP/$t.warmup"); a single call took its normal time again $(val "$t" drained) s after it"
		[ -s "$TMP/$t.connlimit" ] && [ "$(cat "$TMP/$t.connlimit")" != 0 ] &&
			echo "- $t: lighttpd logged \"connection limit reached\" $(cat "$TMP/$t.connlimit") times"
		sed -n 2p "$TMP/$t.warmup" | sed 's/^/- /'
	done
	if [ -s "$FINDINGS" ]; then
		echo
		echo "Findings:"
		sed 's/^/- /' "$FINDINGS"
	fi
	echo
	echo "Run time: $(($(date +%s) - T_START)) s."
} >"$REPORT"

echo
cat "$REPORT"

for t in router router_http apache_proxy; do
	[ -s "$TMP/$t.errorlog" ] || continue
	n=$(grep -ciE 'error|warn' "$TMP/$t.errorlog" || true)
	if [ "$n" -gt 0 ]; then
		echo
		echo "inflight: $t: $n error/warning lines in the web server's error log, the first ones:"
		grep -m 5 -iE 'error|warn' "$TMP/$t.errorlog"
	fi
done

mkdir -p "$ROOT/bench-results"
if [ -n "${BENCH_REPORT:-}" ]; then
	{
		echo
		cat "$REPORT"
	} >>"$BENCH_REPORT"
	echo
	echo "inflight: appended to $BENCH_REPORT"
else
	cp "$REPORT" "$ROOT/bench-results/inflight-$STAMP.md"
	echo
	echo "inflight: written to bench-results/inflight-$STAMP.md; took $(($(date +%s) - T_START)) s"
fi
