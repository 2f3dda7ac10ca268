#!/usr/bin/env bash
# run.sh - builds every libFuzzer target into build-fuzz/ and runs each for FUZZ_RUNS iterations.
#
#   FUZZ_RUNS=20000 tests/fuzz/run.sh [TARGET...]
#
# The router's objects (src/*.c and src/providers/*.c except main.c) are compiled with
# -fsanitize=fuzzer-no-link,address,undefined and each target with -fsanitize=fuzzer,...; objects
# are rebuilt when a source or header under src/ is newer. Every target runs on a temporary copy
# of its seed corpus (tests/fuzz/corpus/<target>/), so the repository is never modified; inputs
# that crash, leak or break a property are kept under build-fuzz/artifacts/ and their paths
# printed. Prints the executions done per target; exits non-zero if any target failed.
#
# Environment: FUZZ_RUNS (default 20000), FUZZ_SEED (libFuzzer -seed, default random),
# FUZZ_JOBS (parallel compiles, default: number of CPUs), CC (default clang), FUZZ_EXTRA_CFLAGS
# (appended to every compile, e.g. -fno-sanitize=alignment to look past a known report; a change
# rebuilds everything).
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
OUT=build-fuzz
RUNS=${FUZZ_RUNS:-20000}
CC=${CC:-clang}
case "$CC" in *clang*) ;; *) CC=clang ;; esac
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

ALL_TARGETS="fuzz_chatreq fuzz_sse fuzz_config fuzz_envfile fuzz_openai_response fuzz_openai_stream fuzz_openai_request fuzz_map_error fuzz_anthropic_response fuzz_anthropic_stream fuzz_anthropic_request fuzz_gemini_response fuzz_gemini_stream fuzz_gemini_request fuzz_auth fuzz_keysnap fuzz_embeddings fuzz_respx_request fuzz_respx_stream"
TARGETS=${*:-$ALL_TARGETS}

# -max_len per target: large enough for the biggest seed (the shipped configuration is ~11 KB,
# the longest recorded stream ~9 KB), small enough to keep iterations fast.
max_len() {
	case "$1" in
	fuzz_config) echo 16384 ;;
	fuzz_openai_stream | fuzz_gemini_stream) echo 16384 ;;
	fuzz_sse) echo 8192 ;;
	fuzz_chatreq | fuzz_openai_request | fuzz_gemini_request | fuzz_respx_request) echo 8192 ;;
	fuzz_openai_response | fuzz_gemini_response) echo 8192 ;;
	fuzz_map_error) echo 4096 ;;
	fuzz_respx_stream) echo 8192 ;;
	*) echo 4096 ;;
	esac
}

PKG_CFLAGS=$(pkg-config --cflags libcurl jansson libconfig sqlite3) || exit 2
PKG_LIBS="$(pkg-config --libs libcurl jansson libconfig sqlite3) -lfcgi -pthread -lm"
SAN="address,undefined"
COMMON="-std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=undefined -pthread"
EXTRA=${FUZZ_EXTRA_CFLAGS:-}
WARN="-Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral"

mkdir -p "$OUT/obj" "$OUT/artifacts" || exit 2
# Different flags than the last build: start over.
if [ "$(cat "$OUT/flags" 2>/dev/null)" != "$CC $COMMON $SAN $EXTRA" ]; then
	rm -rf "$OUT/obj"
	for t in $ALL_TARGETS; do rm -f "$OUT/$t"; done
	mkdir -p "$OUT/obj"
	printf '%s\n' "$CC $COMMON $SAN $EXTRA" >"$OUT/flags"
fi

# ---- build -------------------------------------------------------------------------------------

newest_header=$(find src -name '*.h' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
stale() { # stale OBJ SRC: whether OBJ must be rebuilt
	[ -f "$1" ] || return 0
	[ "$2" -nt "$1" ] && return 0
	[ "$newest_header" -nt "$1" ]
}

OBJS=""
todo=""
for src in $(find src -name '*.c' ! -path src/main.c | sort); do
	obj="$OUT/obj/${src%.c}.o"
	OBJS="$OBJS $obj"
	if stale "$obj" "$src"; then
		mkdir -p "$(dirname "$obj")"
		todo="$todo $src $obj"
	fi
done
if [ -n "$todo" ]; then
	export CC COMMON WARN PKG_CFLAGS SAN EXTRA
	# shellcheck disable=SC2016,SC2086
	printf '%s\n' $todo | xargs -n 2 -P "$JOBS" sh -c \
		'$CC $COMMON $WARN $PKG_CFLAGS -Isrc -fsanitize=fuzzer-no-link,$SAN $EXTRA -c "$1" -o "$2"' sh || {
		echo "run.sh: compiling the router objects failed" >&2
		exit 2
	}
fi

for t in $TARGETS; do
	src="tests/fuzz/$t.c"
	if [ ! -f "$src" ]; then
		echo "run.sh: no target $t" >&2
		exit 2
	fi
	bin="$OUT/$t"
	rebuild=0
	[ -f "$bin" ] || rebuild=1
	for dep in $src tests/fuzz/fuzz_common.h $OBJS; do
		[ "$dep" -nt "$bin" ] && rebuild=1
	done
	if [ "$rebuild" -eq 1 ]; then
		# shellcheck disable=SC2086
		$CC $COMMON $WARN -Werror $PKG_CFLAGS -Isrc -Itests/fuzz -fsanitize=fuzzer,$SAN $EXTRA \
			"$src" $OBJS $PKG_LIBS -o "$bin" || {
			echo "run.sh: building $t failed" >&2
			exit 2
		}
	fi
done

# ---- run ---------------------------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/llm-router-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$ROOT/tests/fuzz/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
printf '%-22s %12s  %s\n' target executions result
for t in $TARGETS; do
	corpus="$WORK/corpus-$t"
	mkdir -p "$corpus" "$OUT/artifacts/$t"
	if [ -d "tests/fuzz/corpus/$t" ]; then
		cp -R "tests/fuzz/corpus/$t/." "$corpus/"
	fi
	log="$OUT/$t.log"
	seed_opt=""
	[ -n "${FUZZ_SEED:-}" ] && seed_opt="-seed=$FUZZ_SEED"
	# shellcheck disable=SC2086
	"$OUT/$t" -runs="$RUNS" -max_len="$(max_len "$t")" -timeout=25 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" $seed_opt "$corpus" \
		</dev/null >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	[ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
	[ -n "$execs" ] || execs=0
	if [ "$rc" -eq 0 ]; then
		printf '%-22s %12s  ok\n' "$t" "$execs"
	else
		status=1
		printf '%-22s %12s  FAILED (exit %d, log %s)\n' "$t" "$execs" "$rc" "$log"
		grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|fuzz property failed|SUMMARY' \
			"$log" | head -5 | sed 's/^/    /'
		sed -n 's/.*Test unit written to \(.*\)$/    crash input: \1/p' "$log"
	fi
done
exit $status
