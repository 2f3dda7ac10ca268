# common.sh - shell functions shared by the benchmark scripts (bench.sh, inflight.sh), which
# source it. They call the sourcing script's die().
# shellcheck shell=bash

# A TCP port nobody listens on (the start functions retry if it is taken meanwhile).
free_port() {
	local used p hex
	used=$(awk 'FNR > 1 { sub(/.*:/, "", $2); print $2 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		printf -v hex '%04X' "$p"
		grep -qx "$hex" <<<"$used" || {
			echo "$p"
			return
		}
	done
	die "no free TCP port found"
}

# bench_router_config DIR THREADS: writes DIR/llm-router.conf, the shipped configuration with
# server.threads = THREADS, daily budgets raised so that budget accounting stays on (a reservation
# per request, settled with its log row) but never refuses a benchmark request, anonymous callers
# (auth_mode "none": the default tier T3), relative data paths under the instance's directory
# (LLM_ROUTER_HOME).
bench_router_config() {
	sed -e "s/^\([[:space:]]*threads[[:space:]]*=\)[[:space:]]*[0-9]*;/\1 $2;/" \
		-e "s/\(daily_budget_usd[[:space:]]*=\)[[:space:]]*[0-9.]*;/\1 1000000000.0;/" \
		-e 's/^\([[:space:]]*auth_mode[[:space:]]*=\).*;/\1 "none";/' \
		"$ROOT/conf/llm-router.conf" >"$1/llm-router.conf"
	grep -q "^[[:space:]]*threads = $2;" "$1/llm-router.conf" ||
		die "could not set server.threads in the router configuration copy"
}

# How busy the machine is before the runs (percent of all CPUs over one second).
cpu_busy() {
	local a b
	a=$(head -n 1 /proc/stat)
	sleep 1
	b=$(head -n 1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN { n = split(a, x); split(b, y); t = 0
		for (i = 2; i <= n; i++) t += y[i] - x[i]
		idle = (y[5] - x[5]) + (y[6] - x[6]); printf "%.0f", (t > 0 ? 100 * (t - idle) / t : 0) }'
}

# wait_up PID URL [curl options]: succeeds once URL answers (any status); fails when PID exits or
# after 10 s.
wait_up() {
	local pid=$1 url=$2
	shift 2
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || return 1
		curl -s -o /dev/null --max-time 2 "$@" "$url" && return 0
		sleep 0.05
	done
	return 1
}

# lighttpd_base_conf DIR PORT: the lines every benchmark lighttpd starts with (DIR its document
# root, DIR/error.log its error log, listening on 127.0.0.1:PORT, with mod_fastcgi).
lighttpd_base_conf() {
	cat <<CONF
server.document-root = "$1"
server.bind = "127.0.0.1"
server.port = $2
server.errorlog = "$1/error.log"
server.modules += ( "mod_fastcgi" )
CONF
}

# apache_base_conf DIR PORT: the server-level lines every benchmark Apache starts with (its files
# under DIR/apache, its error log DIR/error.log, listening on 127.0.0.1:PORT).
apache_base_conf() {
	local dir=$1 port=$2
	cat <<CONF
ServerRoot "$dir/apache"
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile "$dir/apache/httpd.pid"
DefaultRuntimeDir "$dir/apache"
Mutex file:$dir/apache default
ErrorLog "$dir/error.log"
LogLevel warn
TypesConfig /etc/mime.types
Timeout 300
<Directory />
  AllowOverride None
  Require all denied
</Directory>
CONF
}
