# vpsd — build, test and demo. `make help` lists the targets.
.DEFAULT_GOAL := all

VERSION := 0.1.0
BUILD   := build
PYTHON  := /usr/bin/python3
SHELL   := /bin/bash

PKGS := libuv json-c sqlite3 libcrypto libcrypt libvirt libnftnl libmnl libwebsockets
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC      ?= cc
CFLAGS  ?= -O2 -g
# Truncated messages are intended (bounded buffers); paths go through
# str_copy(), which refuses to truncate. Log calls without fields pass "".
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation -Wno-format-zero-length \
           -Wmissing-prototypes -Wstrict-prototypes -fno-strict-aliasing \
           -D_GNU_SOURCE -DVPSD_VERSION='"$(VERSION)"' -I. $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS)
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

# Debian packages: build, runtime, test. `make deps` installs what is missing.
DEPS_BUILD   := build-essential pkg-config clang libvirt-dev libjson-c-dev libnftnl-dev libmnl-dev \
                libsqlite3-dev libcrypt-dev libwebsockets-dev libwebsockets-evlib-uv libuv1-dev libssl-dev libcmocka-dev
DEPS_RUNTIME := libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils nftables iproute2 novnc passwd
DEPS_TEST    := python3-pytest python3-scapy python3-websockets python3-cryptography python3-pil chromium websockify busybox-static cpio sqlite3 valgrind iperf3 iputils-ping \
                genisoimage syslinux syslinux-common mtools dosfstools fdisk util-linux xorriso isolinux
DEPS := $(DEPS_BUILD) $(DEPS_RUNTIME) $(DEPS_TEST)

# Library objects: everything but the programs' main files.
# common/lws_server.c needs libwebsockets: vpsd, the edge and the ledger link it,
# the edge without the rest of libvpsd.a.
LWS_COMMON_SRC := common/lws_server.c
COMMON_SRC := $(filter-out $(LWS_COMMON_SRC),$(wildcard common/*.c))
NODE_SRC   := $(filter-out node/main.c node/vpsctl.c,$(wildcard node/*.c))
NF_SRC     := $(wildcard netfilter/*.c)
# billing-sync/: the sync codec both ends link, and the reference ledger.
# The ledger's server (lws) is vps-ledger's alone, beside its main.
LEDGER_SERVER_SRC := billing-sync/ledger_server.c billing-sync/ledger_sync.c billing-sync/ledger_http.c
BILLING_SRC := $(filter-out billing-sync/ledger_main.c $(LEDGER_SERVER_SRC),$(wildcard billing-sync/*.c))
ISO_SRC    := $(wildcard iso/*.c)
LIB_SRC    := $(COMMON_SRC) $(LWS_COMMON_SRC) $(NODE_SRC) $(NF_SRC) $(BILLING_SRC) $(ISO_SRC)
# ar keeps one member per file name: two sources with one name would lose one.
LIB_CLASH  := $(shell printf '%s\n' $(notdir $(LIB_SRC)) | sort | uniq -d)
$(if $(LIB_CLASH),$(error library sources share a file name: $(LIB_CLASH)))
HEADERS    := $(wildcard common/*.h node/*.h netfilter/*.h console/*.h billing-sync/*.h iso/*.h)
# vpsd-edge: console/ and common/ only, never node/ (no SQLite, no libvirt).
EDGE_SRC   := $(wildcard console/*.c) $(LWS_COMMON_SRC)
EDGE_PKGS  := libuv libwebsockets libcrypto
EDGE_CFLAGS := $(shell pkg-config --cflags $(EDGE_PKGS) 2>/dev/null)
EDGE_LIBS  := $(shell pkg-config --libs $(EDGE_PKGS) 2>/dev/null)

UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRC))
ASAN_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/asan/%,$(UNIT_SRC))
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

PROGRAMS := $(BUILD)/vpsd $(BUILD)/vpsctl $(BUILD)/vps-ledger $(BUILD)/vpsd-edge $(BUILD)/web/.built $(BUILD)/tests/hvprobe_boot $(BUILD)/tests/virt_domain $(BUILD)/tests/qmp_probe \
            $(BUILD)/tests/nf_driver

# The console's pages (console/web) with noVNC from Debian's `novnc` and
# xterm.js from npm (Debian's node-xterm has no browser build), pinned.
XTERM_VERSION := 5.5.0
NOVNC_DIR     := /usr/share/novnc
$(BUILD)/npm/node_modules/@xterm/xterm/lib/xterm.js:
	@mkdir -p $(BUILD)/npm
	$(Q)npm install --silent --no-audit --no-fund --prefix $(BUILD)/npm @xterm/xterm@$(XTERM_VERSION)

$(BUILD)/web/.built: $(wildcard console/web/*) $(BUILD)/npm/node_modules/@xterm/xterm/lib/xterm.js
	@$(if $(Q),echo "  WEB     $(BUILD)/web")
	$(Q)rm -rf $(BUILD)/web && mkdir -p $(BUILD)/web/novnc $(BUILD)/web/xterm
	$(Q)cp console/web/* $(BUILD)/web/
	$(Q)cp -rL $(NOVNC_DIR)/core $(NOVNC_DIR)/vendor $(BUILD)/web/novnc/
	$(Q)cp $(BUILD)/npm/node_modules/@xterm/xterm/lib/xterm.js $(BUILD)/npm/node_modules/@xterm/xterm/css/xterm.css $(BUILD)/web/xterm/
	$(Q)chmod -R a+rX $(BUILD)/web && touch $@

# `make V=1` shows whole command lines.
Q := $(if $(V),,@)

.PHONY: all help deps check unit unit-asan fuzz fuzz-run integration bench demo demo-stop clean
.DELETE_ON_ERROR:

all: $(PROGRAMS)

help:
	@echo "make deps        install the Debian packages vpsd needs (root)"
	@echo "make             build $(BUILD)/vpsd and $(BUILD)/vpsctl"
	@echo "make demo        deps + build, then vps-ledger and vpsd on ./var, joined, with an ordered guest"
	@echo "make demo-stop   stop the demo's vpsd and ledger (and libvirtd/virtlogd if the demo started them)"
	@echo "make check       deps + build + every test (unit, unit under ASan+UBSan, fuzz smoke, integration)"
	@echo "make unit | unit-asan | fuzz-run | integration   one part of check"
	@echo "make bench       benchmarks against their peers (not tests; never gate CI)"

# Idempotent and non-interactive: installs only what is missing, and asks
# apt for fresh lists only when it has to. npm (for xterm.js) is Debian's
# package only where no npm is on PATH: a Node.js from elsewhere brings its
# own, and Debian's conflicts with it.
deps:
	@missing=""; for p in $(DEPS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -z "$$missing" ]; then echo "deps: all $(words $(DEPS)) Debian packages present"; exit 0; fi; \
	echo "deps: installing$$missing"; \
	[ "$$(id -u)" = 0 ] || { echo "deps: run as root to install:$$missing" >&2; exit 1; }; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q --no-install-recommends $$missing || \
	    { apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; }

$(BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/asan-obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC-ASAN $<")
	$(Q)$(CC) $(CFLAGS) $(SANITIZE) -c -o $@ $<

LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
ASAN_OBJ := $(patsubst %.c,$(BUILD)/asan-obj/%.o,$(LIB_SRC))

$(BUILD)/libvpsd.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/libvpsd-asan.a: $(ASAN_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/vpsd: $(BUILD)/obj/node/main.o $(BUILD)/libvpsd.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

COMMON_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC))
EDGE_OBJ   := $(patsubst %.c,$(BUILD)/obj/%.o,$(EDGE_SRC))

$(BUILD)/obj/console/%.o: CFLAGS += $(EDGE_CFLAGS)
$(patsubst %.c,$(BUILD)/obj/%.o,$(LWS_COMMON_SRC) $(LEDGER_SERVER_SRC) billing-sync/ledger_main.c): CFLAGS += $(EDGE_CFLAGS)

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/vpsd-edge: $(EDGE_OBJ) $(BUILD)/libcommon.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(EDGE_LIBS)

$(BUILD)/vpsctl: $(BUILD)/obj/node/vpsctl.o $(BUILD)/libvpsd.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

LEDGER_SERVER_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LEDGER_SERVER_SRC) $(LWS_COMMON_SRC))
$(BUILD)/vps-ledger: $(BUILD)/obj/billing-sync/ledger_main.o $(LEDGER_SERVER_OBJ) $(BUILD)/libvpsd.a
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs libwebsockets 2>/dev/null)

# Test drivers: small programs that let pytest drive one module for real.
$(BUILD)/tests/%: $(BUILD)/obj/tests/integration/%.o $(BUILD)/libvpsd.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit/%: tests/unit/%.c $(BUILD)/libvpsd.a $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libvpsd.a $(LDLIBS) -lcmocka

$(BUILD)/asan/%: tests/unit/%.c $(BUILD)/libvpsd-asan.a $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) $(SANITIZE) -o $@ $< $(BUILD)/libvpsd-asan.a $(LDLIBS) -lcmocka

# libFuzzer targets: clang only; the library sources are compiled in.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -DVPSD_VERSION='"$(VERSION)"' -I. $(PKG_CFLAGS) \
               -fsanitize=fuzzer,address,undefined
$(BUILD)/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRC) $(LDLIBS)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

unit-asan: $(ASAN_BIN)
	@set -e; for t in $(ASAN_BIN); do echo "== $$t (ASan+UBSan)"; \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $$t; done

fuzz: $(FUZZ_BIN)

# A short run of every fuzzer over its committed corpus and crash
# reproducers, plus fresh inputs for a bounded count: catches regressions,
# is not a fuzzing campaign (run the binaries longer for that).
FUZZ_RUNS ?= 200000
fuzz-run: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); echo "== $$n: $(FUZZ_RUNS) runs"; \
	    mkdir -p $(BUILD)/fuzz-work/$$n; \
	    $$f -runs=$(FUZZ_RUNS) -max_len=8192 -seed=1 $(BUILD)/fuzz-work/$$n tests/fuzz/corpus/$$n \
	        2>$(BUILD)/fuzz-work/$$n.log || { tail -40 $(BUILD)/fuzz-work/$$n.log; exit 1; }; \
	    tail -1 $(BUILD)/fuzz-work/$$n.log; done

integration: all
	cd tests/integration && $(PYTHON) -m pytest -ra -p no:cacheprovider $(PYTEST_ARGS) .

# Benchmarks print a ratio against the peer measured in the same run.
# Their C helpers (tests/bench/*.c) are built only for them.
BENCH_BIN := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/*.c))
$(BUILD)/bench/%: tests/bench/%.c $(wildcard tests/bench/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LINK    $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $< $(shell pkg-config --libs libssl libcrypto)

bench: all $(BENCH_BIN)
	$(PYTHON) tests/bench/bench_lifecycle.py
	$(PYTHON) tests/bench/bench_netfilter.py
	$(PYTHON) tests/bench/bench_console.py
	$(PYTHON) tests/bench/bench_sync.py
	$(PYTHON) tests/bench/bench_iso.py

check: deps
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory unit-asan
	$(MAKE) --no-print-directory fuzz-run
	$(MAKE) --no-print-directory integration

demo: deps
	$(MAKE) --no-print-directory all
	bash node/demo.sh start

demo-stop:
	bash node/demo.sh stop

clean:
	rm -rf $(BUILD)
