# LLM Router - plain GNU make.
#
#   make            build build/llm-router
#   make run        build, then serve on http://127.0.0.1:$(PORT) behind lighttpd (Ctrl-C stops)
#   make test       the whole suite: shape, unit, fixture and integration tests (installs what is missing);
#                   the integration tests run behind each of FRONTS (lighttpd, Apache + mod_fcgid,
#                   Apache with .htaccess, Apache plain CGI); FRONTS=lighttpd for one
#   make test-budget-loop   the budget concurrency test, 20 rounds
#   make asan       the whole suite against an ASan+UBSan build
#   make valgrind   the integration suite with the router under valgrind
#   make fuzz       every fuzz target for FUZZ_RUNS iterations (FUZZ_RUNS=... for longer runs)
#   make bench      benchmarks with ratios against baselines measured in the same run
#   make bench-inflight  only the in-flight scenario of make bench (1,024 slow streaming calls)
#   make install    PREFIX=/usr/local DESTDIR= (binary, configuration, web-server files)

PREFIX ?= /usr/local
DESTDIR ?=
PORT ?= 8080
BUILD ?= build
CC ?= cc
FUZZ_RUNS ?= 20000

PKGS := libcurl jansson libconfig sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lfcgi

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2 -Wno-format-nonliteral -Werror
# CFLAGS is the caller's (optimisation, debug info); the language level and warnings always apply.
CFLAGS ?= -O2 -g
# Hardening for a network-facing program. FORTIFY needs optimisation; the sanitizer build drops it.
HARDEN_CFLAGS ?= -fstack-protector-strong
HARDEN_CPPFLAGS ?= -D_FORTIFY_SOURCE=2
HARDEN_LDFLAGS ?= -Wl,-z,relro,-z,now
ALL_CFLAGS = -std=c11 $(WARN) -pthread $(HARDEN_CFLAGS) $(CFLAGS)
CPPFLAGS += -D_GNU_SOURCE $(HARDEN_CPPFLAGS) $(PKG_CFLAGS)
LDFLAGS += $(HARDEN_LDFLAGS)
LDLIBS += $(PKG_LIBS) -pthread -lm
SANFLAGS :=

SRCS := $(wildcard src/*.c) $(wildcard src/providers/*.c)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
OBJS := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
TEST_SRCS := $(wildcard tests/unit/*.c)

.PHONY: all run test test-shape test-unit test-fixtures test-integration test-budget-loop test-kill-loop deps asan valgrind fuzz fuzz-long \
	bench bench-inflight install clean

all: $(BUILD)/llm-router

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(SANFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/llm-router: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(SANFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/test_unit: $(TEST_SRCS) $(LIB_OBJS)
	$(CC) $(CPPFLAGS) -Isrc $(ALL_CFLAGS) $(SANFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/test_fixtures: tests/fixtures/runner.c $(LIB_OBJS)
	$(CC) $(CPPFLAGS) -Isrc $(ALL_CFLAGS) $(SANFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/fcgi_fixed: tests/bench/fcgi_fixed.c
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ -lfcgi -pthread -o $@

$(BUILD)/bare_relay: tests/bench/bare_relay.c
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/fake_upstream: tests/bench/fake_upstream.c
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ -pthread -o $@

$(BUILD)/scraper: tests/bench/scraper.c
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $^ -o $@

deps:
	@tests/tools/deps.sh $(DEPS)

run: DEPS = run
run: deps all
	@PORT=$(PORT) BUILD=$(BUILD) lighttpd/run.sh

test: DEPS = test
test: deps
	@$(MAKE) --no-print-directory all $(BUILD)/test_unit $(BUILD)/test_fixtures
	@$(MAKE) --no-print-directory test-shape test-unit test-fixtures test-integration

# No module cycle, no function over 120 lines, no file over 1,200 lines in src/.
test-shape:
	node tests/tools/shape.js

test-unit: $(BUILD)/test_unit
	$(BUILD)/test_unit

test-fixtures: $(BUILD)/test_fixtures
	$(BUILD)/test_fixtures tests/fixtures tests/specs/samples

# The integration suite behind each web-server set-up in turn (tests/integration/lib/harness.js).
FRONTS ?= lighttpd apache-fcgid apache-htaccess apache-cgi

# Under ASan: the router's two ways of serving, as a FastCGI responder (lighttpd; mod_fcgid runs the
# same code) and as a CGI program; ASAN_FRONTS="$(FRONTS)" for all four.
ASAN_FRONTS ?= lighttpd apache-cgi

test-integration: $(BUILD)/llm-router
	ROUTER_BIN=$(abspath $(BUILD)/llm-router) ROUTER_FRONTS="$(FRONTS)" tests/tools/run-integration.sh

# The kill -9 test 10 times in a row.
test-kill-loop: $(BUILD)/llm-router
	cd tests && ROUTER_BIN=$(abspath $(BUILD)/llm-router) KILL_ROUNDS=10 \
		node --test --test-reporter=spec --test-name-pattern='kill -9' integration/logging.test.js

# The budget concurrency test 20 times (100 concurrent requests each, on a fresh router).
test-budget-loop: $(BUILD)/llm-router
	cd tests && ROUTER_BIN=$(abspath $(BUILD)/llm-router) BUDGET_ROUNDS=20 \
		node --test --test-reporter=spec --test-name-pattern='concurrent requests' integration/budget.test.js

asan: DEPS = asan
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan CC=clang CFLAGS="-O1 -g" HARDEN_CPPFLAGS= \
		SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
		all build-asan/test_unit build-asan/test_fixtures
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 build-asan/test_unit
	ASAN_OPTIONS=detect_leaks=1 build-asan/test_fixtures tests/fixtures tests/specs/samples
	ROUTER_BIN=$(abspath build-asan/llm-router) ROUTER_SANITIZER=asan ROUTER_FRONTS="$(ASAN_FRONTS)" \
		tests/tools/run-integration.sh

# Behind lighttpd only: under mod_fcgid and CGI every process start would pay valgrind's.
valgrind: DEPS = valgrind
valgrind: deps all
	ROUTER_BIN=$(abspath $(BUILD)/llm-router) ROUTER_SANITIZER=valgrind tests/tools/run-integration.sh

fuzz: DEPS = fuzz
fuzz: deps
	@FUZZ_RUNS=$(FUZZ_RUNS) tests/fuzz/run.sh

fuzz-long: DEPS = fuzz
fuzz-long: deps
	@FUZZ_RUNS=2000000 tests/fuzz/run.sh

bench: DEPS = bench
bench: deps all $(BUILD)/fcgi_fixed $(BUILD)/bare_relay $(BUILD)/fake_upstream $(BUILD)/scraper
	@BUILD=$(BUILD) tests/bench/bench.sh

bench-inflight: DEPS = bench
bench-inflight: deps all $(BUILD)/fake_upstream
	@BUILD=$(BUILD) tests/bench/inflight.sh

# Installs the binary, the configuration (an edited one is kept: the new default goes beside it
# as llm-router.conf.dist), and the web-server files under $(PREFIX)/share/llm-router (www/: the
# shared-hosting files and the dashboard, which the lighttpd and Apache files serve from there).
SHARE = $(DESTDIR)$(PREFIX)/share/llm-router
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/etc/llm-router $(SHARE)/docroot \
		$(SHARE)/apache $(SHARE)/lighttpd $(SHARE)/www/errors $(SHARE)/www/dashboard
	install -m 0755 $(BUILD)/llm-router $(DESTDIR)$(PREFIX)/bin/llm-router
	@if [ -f $(DESTDIR)$(PREFIX)/etc/llm-router/llm-router.conf ] && \
	    ! cmp -s conf/llm-router.conf $(DESTDIR)$(PREFIX)/etc/llm-router/llm-router.conf; then \
		echo "keeping $(DESTDIR)$(PREFIX)/etc/llm-router/llm-router.conf; the new default is llm-router.conf.dist"; \
		install -m 0644 conf/llm-router.conf $(DESTDIR)$(PREFIX)/etc/llm-router/llm-router.conf.dist; \
	else \
		install -m 0644 conf/llm-router.conf $(DESTDIR)$(PREFIX)/etc/llm-router/llm-router.conf; \
	fi
	sed 's|@PREFIX@|$(PREFIX)|g' lighttpd/llm-router-container.conf > $(SHARE)/lighttpd-container.conf
	install -m 0644 lighttpd/llm-router.conf $(SHARE)/lighttpd/llm-router.conf
	install -m 0644 apache/llm-router-fcgid.conf apache/llm-router-proxy-fcgi.conf apache/llm-router-mpm.conf \
		apache/llm-router.service $(SHARE)/apache/
	install -m 0644 www/.htaccess $(SHARE)/www/.htaccess
	install -m 0644 www/errors/*.json $(SHARE)/www/errors/
	install -m 0644 www/dashboard/index.html www/dashboard/app.js www/dashboard/style.css $(SHARE)/www/dashboard/
	install -d $(SHARE)/lighttpd/errors
	for f in www/errors/*.json; do \
		install -m 0644 $$f $(SHARE)/lighttpd/errors/json-$$(basename $$f .json).html; done

clean:
	rm -rf build build-asan build-fuzz build-valgrind

-include $(OBJS:.o=.d) $(LIB_OBJS:.o=.d)
