# mappend — an IMAP proxy that adds MULTIAPPEND in front of servers lacking it.
#
#   make            build ./mappend
#   make check      install missing Debian packages (as root), build, run every test
#   make asan       the same tests with AddressSanitizer and UBSan (also: SANITIZE=1)
#   make test-copy  the pass-through, MULTIAPPEND and Dovecot suites once more
#                   with splice = no (every literal copied; SANITIZE=1 too)
#   make demo       a private legacy Dovecot on loopback with mappend in front
#   make bench      the benchmarks of BENCHMARKS.md
#   make fuzz       build the libFuzzer targets (tests/fuzz/fuzz_*.c, clang with
#                   ASan+UBSan) and run each for FUZZ_SECONDS (default 60) on a
#                   throw-away copy of its seed corpus; fails on any finding and
#                   prints the reproducer's path (build/fuzz/findings/).  Also:
#                   FUZZ_PARALLEL=2 runs two targets at a time
#   make install    PREFIX=/usr/local DESTDIR= (uninstall: the same variables)
#   make deps       install (as root) or print the Debian packages needed

PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= /etc
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d

# The version -V prints: the VERSION file; a checkout without one asks git.
VERSION ?= $(shell cat VERSION 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo unknown)

CC ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
STD := -std=c11 -D_GNU_SOURCE

PKGS := libevent libevent_openssl openssl
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CRITERION_LIBS = $(shell $(PKG_CONFIG) --libs criterion 2>/dev/null || echo -lcriterion)

ifeq ($(SANITIZE),1)
BUILD ?= build/asan
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# the tests start ./mappend and the mock from here
else
BUILD ?= build/release
SAN :=
endif

# -iquote: our headers for #include "..." only, so that include/limits.h
# never stands in for the C library's <limits.h>
ALL_CFLAGS = $(STD) $(WARNINGS) $(CFLAGS) $(SAN) -iquote include $(PKG_CFLAGS) -MMD -MP
ALL_LDFLAGS = $(LDFLAGS) $(SAN)

# the daemon's sources; main.c is the only one the tests do not link
PROXY_SRCS := $(filter-out proxy/main.c,$(wildcard proxy/*.c))
PROXY_OBJS := $(PROXY_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/proxy/main.o

UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)

MOCK_SRCS := $(wildcard tests/mock/*.c)
MOCK_OBJS := $(MOCK_SRCS:%.c=$(BUILD)/%.o)

# tests/integration: shared harness (harness*.c, the fault relay) plus one
# binary per test_*.c
ITEST_LIB_SRCS := $(wildcard tests/integration/harness*.c) tests/integration/faultrelay.c
ITEST_LIB_OBJS := $(ITEST_LIB_SRCS:%.c=$(BUILD)/%.o)
ITEST_SRCS := $(wildcard tests/integration/test_*.c)
ITEST_BINS := $(ITEST_SRCS:tests/integration/%.c=$(BUILD)/tests/%)

# one benchmark program, from every source in tests/bench
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_OBJS := $(BENCH_SRCS:%.c=$(BUILD)/%.o)
BENCH_BINS := $(BUILD)/tests/bench_mappend
BENCH_LIBS = $(shell $(PKG_CONFIG) --libs openssl 2>/dev/null || echo -lssl -lcrypto)

DAEMON := $(BUILD)/mappend
MOCK := $(BUILD)/tests/mock_imapd
UNIT := $(BUILD)/tests/unit_tests

.PHONY: all check asan test-unit test-integration test-all test-copy demo bench install \
	uninstall deps clean fuzz fuzz-deps fuzz-binaries

all: mappend

# ./mappend is the release build; the sanitizer build stays in build/asan
mappend: $(BUILD)/mappend
	@if [ "$(SANITIZE)" != 1 ]; then cp $(BUILD)/mappend mappend; fi

$(DAEMON): $(MAIN_OBJ) $(PROXY_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# only main.c knows the version and the default configuration file
$(MAIN_OBJ): ALL_CFLAGS += -DMAPPEND_VERSION='"$(VERSION)"' \
	-DDEFAULT_CONFIG='"$(SYSCONFDIR)/mappend/mappend.conf"'
$(MAIN_OBJ): $(wildcard VERSION)

# the mock's pure helpers are unit-tested too
$(UNIT): $(UNIT_OBJS) $(PROXY_OBJS) $(BUILD)/tests/mock/mock_util.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CRITERION_LIBS)

$(MOCK): $(MOCK_OBJS) $(PROXY_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/integration/test_%.o $(ITEST_LIB_OBJS) $(PROXY_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) $(CRITERION_LIBS)

# the benchmark program uses libc, its threads and OpenSSL (a TLS client)
$(BENCH_BINS): $(BENCH_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -pthread -o $@ $^ $(BENCH_LIBS)

test-binaries: $(DAEMON) $(MOCK) $(UNIT) $(ITEST_BINS)

# Criterion runs tests in parallel by default; the integration tests start
# their own servers on kernel-chosen ports, so that is safe.
export MAPPEND_BIN = $(abspath $(DAEMON))
export MAPPEND_MOCK = $(abspath $(MOCK))
export MAPPEND_DOVECOT_SH = $(abspath tests/dovecot/dovecot.sh)
CRITERION_ARGS ?= --jobs 2

test-unit: $(UNIT)
	$(UNIT) $(CRITERION_ARGS)

# A bad exit of mappend found in a suite's teardown does not fail the test
# in Criterion; the harness writes it to MAPPEND_TEST_FAILURES instead.
test-integration: test-binaries
	@set -e; fails=$$(mktemp); trap 'rm -f "$$fails"' EXIT; \
	for t in $(ITEST_BINS); do echo "== $$t"; \
		MAPPEND_TEST_FAILURES=$$fails $$t $(CRITERION_ARGS); done; \
	if [ -s "$$fails" ]; then cat "$$fails"; \
		echo "make: mappend did not exit cleanly in the tests above"; exit 1; fi

test-all: test-unit test-integration

# The suites whose long literals take the kernel's path (splice), once more
# on the copy path: the harness appends MAPPEND_TEST_EXTRA_CONF to every
# configuration it writes.
COPY_SUITES := passthrough multiappend dovecot
test-copy: test-binaries
	MAPPEND_TEST_EXTRA_CONF='splice = no' $(MAKE) test-integration \
		ITEST_BINS='$(COPY_SUITES:%=$(BUILD)/tests/test_%)'

check: deps
	$(MAKE) all
	$(MAKE) test-all

asan: deps
	$(MAKE) SANITIZE=1 test-all

demo: deps
	$(MAKE) all
	tests/demo.sh

# nginx's mail proxy runs beside mappend; BENCH_ARGS go to the benchmark
# program (tests/bench/run.sh --help), e.g. BENCH_ARGS='--only fetch --runs 3'
BENCH_DEB_PKGS := nginx-light libnginx-mod-mail
BENCH_ARGS ?=
bench:
	$(MAKE) deps DEB_PKGS="$(DEB_PKGS) $(BENCH_DEB_PKGS)"
	$(MAKE) all $(BENCH_BINS) $(MOCK)
	tests/bench/run.sh $(abspath $(BUILD)) $(BENCH_ARGS)

# libFuzzer targets: every tests/fuzz/fuzz_*.c is one; the other .c files
# there are shared by them.  The proxy's own sources (main.c excepted) are
# compiled again by clang with coverage instrumentation into build/fuzz.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_PARALLEL ?= 1
FUZZ_BUILD := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
FUZZ_CFLAGS = $(STD) $(WARNINGS) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
	-iquote include $(PKG_CFLAGS) -MMD -MP
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_LIB_SRCS := $(filter-out $(FUZZ_SRCS),$(wildcard tests/fuzz/*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJS := $(PROXY_SRCS:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

# an archive: each target links only the objects it needs
$(FUZZ_BUILD)/libmappend.a: $(FUZZ_LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libmappend.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)

fuzz-binaries: $(FUZZ_BINS)

fuzz: deps fuzz-deps
	$(MAKE) fuzz-binaries
	FUZZ_PARALLEL=$(FUZZ_PARALLEL) tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_BINS)

# The sample configuration is 0640: the real one may hold master_password.
# On the running system (DESTDIR empty) the user and the spool directory
# are created at once where systemd's tools exist.
install: mappend
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/mappend \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	install -m 0755 mappend $(DESTDIR)$(SBINDIR)/mappend
	install -m 0640 etc/mappend.conf $(DESTDIR)$(SYSCONFDIR)/mappend/mappend.conf.sample
	install -m 0644 doc/mappend.8 $(DESTDIR)$(MANDIR)/man8/mappend.8
	install -m 0644 doc/mappend.conf.5 $(DESTDIR)$(MANDIR)/man5/mappend.conf.5
	sed 's|@SBINDIR@|$(SBINDIR)|g; s|@SYSCONFDIR@|$(SYSCONFDIR)|g' etc/mappend.service \
		> $(DESTDIR)$(UNITDIR)/mappend.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/mappend.service
	install -m 0644 etc/mappend.sysusers $(DESTDIR)$(SYSUSERSDIR)/mappend.conf
	install -m 0644 etc/mappend.tmpfiles $(DESTDIR)$(TMPFILESDIR)/mappend.conf
	@if [ -n "$(DESTDIR)" ]; then exit 0; fi; \
	if command -v systemd-sysusers >/dev/null 2>&1; then \
		echo "systemd-sysusers $(SYSUSERSDIR)/mappend.conf"; \
		systemd-sysusers $(SYSUSERSDIR)/mappend.conf; \
	else \
		echo "no systemd-sysusers: create the user yourself, e.g."; \
		echo "  useradd --system --user-group --home-dir /var/spool/mappend --shell /usr/sbin/nologin mappend"; \
	fi; \
	if command -v systemd-tmpfiles >/dev/null 2>&1; then \
		echo "systemd-tmpfiles --create $(TMPFILESDIR)/mappend.conf"; \
		systemd-tmpfiles --create $(TMPFILESDIR)/mappend.conf; \
	else \
		echo "no systemd-tmpfiles: create the spool yourself, e.g."; \
		echo "  install -d -o mappend -g mappend -m 0700 /var/spool/mappend"; \
	fi

# Exactly what install wrote; the administrator's mappend.conf stays, and
# so do the user and the spool (their files may still matter).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/mappend \
		$(DESTDIR)$(SYSCONFDIR)/mappend/mappend.conf.sample \
		$(DESTDIR)$(MANDIR)/man8/mappend.8 $(DESTDIR)$(MANDIR)/man5/mappend.conf.5 \
		$(DESTDIR)$(UNITDIR)/mappend.service \
		$(DESTDIR)$(SYSUSERSDIR)/mappend.conf $(DESTDIR)$(TMPFILESDIR)/mappend.conf
	@rmdir $(DESTDIR)$(SYSCONFDIR)/mappend 2>/dev/null || true
	@if [ -z "$(DESTDIR)" ]; then \
		echo "left in place: $(SYSCONFDIR)/mappend (if not empty), user mappend, /var/spool/mappend"; \
	fi

# Debian packages for building, testing (haproxy: the PROXY protocol tests
# put a real one in front of mappend) and the demo (and for make fuzz).
# As root they are installed; otherwise the exact command is printed.
DEB_PKGS := gcc make pkg-config libc6-dev libevent-dev libssl-dev openssl \
	libcriterion-dev dovecot-imapd haproxy procps groff-base
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
deps:
	@$(call install_debs,deps,$(DEB_PKGS))

fuzz-deps:
	@$(call install_debs,fuzz-deps,$(FUZZ_DEB_PKGS))

# $(call install_debs,TARGET,PACKAGES)
install_debs = missing=""; for p in $(2); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "make $(1): installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends$$missing; \
	else \
		echo "make $(1): missing Debian packages; as root run:"; \
		echo "  apt-get install -y --no-install-recommends$$missing"; \
		exit 1; \
	fi

clean:
	rm -rf build mappend

# keep the objects of pattern-built test programs between runs
.SECONDARY:

-include $(shell find build -name '*.d' 2>/dev/null)
