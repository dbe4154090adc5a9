# ublk-lua: one plain Makefile.
#   make            build build/ublk-lua and build/ublk/core.so
#   make run        serve examples/mydisk.lua (in a QEMU guest if this kernel has no ublk)
#   make test       host specs + guest specs on both kernels; last line "N passed, N failed"
#   make bench      side-by-side benchmarks in one guest boot (QUICK=1: fewer
#                   workloads, one round; PEERS=1: the kernel's kublk beside ours;
#                   RBD=1: a Ceph image by ublk-lua, rbd-nbd and krbd)
#   make bench-crash  the power-cut bench: recording's cost, crash states per minute
#   make bench-copy   what a 128 KiB copy, clear and checksum cost in the guest
#                   (UBLK_VM_CPU_MODEL=max,-erms: without ERMS, spec/harness/vm/README.md)
#   make fuzz       libFuzzer on the request path + seeded property tests
#                   (FUZZ_SECONDS=60 per target; the corpus is spec/fuzz/corpus)
#   make install    PREFIX=/usr/local DESTDIR=: the executable, the modules, ublk-lua(1),
#                   bash completion, the systemd unit, the udev rule, the docs and examples
#   make docs-options  the C backends' options table in docs/backends.md
#   make rock       build/rock/ublk-lua-VERSION-1.src.rock: the committed tree as a
#                   LuaRocks source rock (`luarocks --lua-version=5.1 build` it anywhere)
#   WERROR=1 adds -Werror; SANITIZE=1 builds with ASan+UBSan into build-san
PREFIX ?= /usr/local
DESTDIR ?=
LUADIR ?= $(PREFIX)/share/lua/5.1
LIBDIR ?= $(PREFIX)/lib/lua/5.1
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/ublk-lua
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
UNITDIR ?= $(PREFIX)/lib/systemd/system
# Under PREFIX, as everything install writes (a rock's tree, a DESTDIR):
# udev reads /usr/lib/udev/rules.d and /etc/udev/rules.d, so with
# PREFIX=/usr/local link the rule into /etc (docs/unprivileged.md) or
# make install UDEVRULESDIR=/etc/udev/rules.d
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
LUAJIT ?= luajit
# the backend contract for plugins (docs/c-backends.md) and its pkg-config file
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(PREFIX)/lib/pkgconfig

CC ?= gcc
LUAJIT_CFLAGS := $(shell pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
LUAJIT_LIBS := $(shell pkg-config --libs luajit 2>/dev/null || echo -lluajit-5.1)
# CFLAGS is the caller's (luarocks passes its own); what the code needs to
# build at all is in BASE_CFLAGS, which nobody overrides.
CFLAGS ?= -O2 -g
BASE_CFLAGS := -std=gnu11 -Wall -Wextra -Wshadow -fPIC -D_GNU_SOURCE -pthread
# libnbd: the nbd backend's client (Debian libnbd-dev)
NBD_CFLAGS := $(shell pkg-config --cflags libnbd 2>/dev/null)
NBD_LIBS := $(shell pkg-config --libs libnbd 2>/dev/null || echo -lnbd)
BASE_CFLAGS += $(NBD_CFLAGS)
# librbd and librados, the rbd backend's client, are not linked: the
# backend loads them at its first device (runtime/backends/rbd_lib.h);
# their headers (Debian librbd-dev) are needed to build.
LDLIBS := -luring -lpthread -ldl $(NBD_LIBS)

B ?= build
ifeq ($(WERROR),1)
BASE_CFLAGS += -Werror
endif
ifeq ($(SANITIZE),1)
B := build-san
BASE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# runtime/ is in folders, one a layer (docs/architecture.md): a folder's
# sources are the .c files in it.  All but lua/ build without LuaJIT on the
# include path; only lua/ (ublk.core and the Lua backend) and main.c
# include Lua.
FOLDERS := base ctrl queue backends device shutdown
RUNTIME_SRCS := $(foreach d,$(FOLDERS),$(wildcard runtime/$(d)/*.c))
RUNTIME_HDRS := $(wildcard runtime/include/*.h $(FOLDERS:%=runtime/%/*.h))
BRIDGE_SRCS := $(wildcard runtime/lua/*.c)
OBJS := $(RUNTIME_SRCS:runtime/%.c=$(B)/obj/%.o)
BRIDGE_OBJS := $(BRIDGE_SRCS:runtime/%.c=$(B)/obj/%.o)
LUA_MODULES := $(wildcard lua/ublk/*.lua)
# the C test programs, one a backend or concern: spec/c/test_NAME.c -> $(B)/test-NAME
C_TESTS := $(patsubst spec/c/test_%.c,$(B)/test-%,$(wildcard spec/c/test_*.c))

VERSION := $(shell sed -n 's/^\#define UBLK_LUA_VERSION "\(.*\)"/\1/p' runtime/lua/lua_core.c)

.PHONY: all deps run test test-host test-guest bench bench-crash bench-copy fuzz install clean rock docs-options
all: $(B)/ublk-lua $(B)/ublk/core.so $(C_TESTS) $(B)/ublk-lua-test

# One rule per folder, bottom up.  Its prerequisites are the headers it
# may reach: its own and those of the folders beneath it (of which it
# includes only the public one); runtime/include/, the kernel's ABI, the
# backend contract and the state directory, is beneath every one.  No
# include runs back up.
headers = $(wildcard runtime/include/*.h $(foreach d,$(1),runtime/$(d)/*.h))
COMPILE = $(CC) $(BASE_CFLAGS) $(CFLAGS) -c -o $@ $<
COMPILE_LUA = $(CC) $(BASE_CFLAGS) $(CFLAGS) $(LUAJIT_CFLAGS) -I$(B)/gen -c -o $@ $<
CDEFS := $(B)/gen/lua_ffi_cdef.h $(B)/gen/stats_cdef.h $(B)/gen/record_log_cdef.h

$(B)/obj/base/%.o: runtime/base/%.c $(call headers,base) | $(B)/obj/base
	$(COMPILE)

$(B)/obj/ctrl/%.o: runtime/ctrl/%.c $(call headers,base ctrl) | $(B)/obj/ctrl
	$(COMPILE)

$(B)/obj/queue/%.o: runtime/queue/%.c $(call headers,base queue) | $(B)/obj/queue
	$(COMPILE)

$(B)/obj/backends/%.o: runtime/backends/%.c $(call headers,base backends) | $(B)/obj/backends
	$(COMPILE)

$(B)/obj/device/%.o: runtime/device/%.c $(call headers,base ctrl queue device) | $(B)/obj/device
	$(COMPILE)

$(B)/obj/shutdown/%.o: runtime/shutdown/%.c $(call headers,base ctrl queue device shutdown) | $(B)/obj/shutdown
	$(COMPILE)

$(B)/obj/lua/%.o: runtime/lua/%.c $(call headers,base ctrl queue backends device shutdown lua) $(CDEFS) | $(B)/obj/lua
	$(COMPILE_LUA)

$(B)/obj/main.o: runtime/main.c $(call headers,base ctrl queue backends device shutdown lua) $(CDEFS) | $(B)/obj
	$(COMPILE_LUA)

# What C and Lua share is written once, in a header (runtime/lua/lua_ffi.h, the
# bridge's entry points; runtime/queue/stats.h, the statistics mapping;
# runtime/backends/record_log.h, the recorder's log); its FFI part becomes a C
# string that ublk.core hands to Lua (core.cdef, core.stats_cdef,
# core.record_log_cdef).
define cdef
{ echo '/* generated from $< by the Makefile */'; \
  echo 'static const char ublk_$*_cdef[] ='; \
  sed -n '/BEGIN FFI/,/END FFI/{/ FFI \*\//d;s/\\/\\\\/g;s/"/\\"/g;s/^/"/;s/$$/\\n"/;p;}' $<; \
  echo ';'; } > $@
endef
$(B)/gen/%_cdef.h: runtime/lua/%.h | $(B)/gen
	$(cdef)
$(B)/gen/%_cdef.h: runtime/queue/%.h | $(B)/gen
	$(cdef)
$(B)/gen/%_cdef.h: runtime/backends/%.h | $(B)/gen
	$(cdef)

$(B)/obj $(FOLDERS:%=$(B)/obj/%) $(B)/obj/lua $(B)/ublk $(B)/gen:
	mkdir -p $@

# The executable exports its symbols (-E) so that FFI code can reach them.
$(B)/ublk-lua: $(B)/obj/main.o $(BRIDGE_OBJS) $(OBJS)
	$(CC) $(LDFLAGS) -Wl,-E -o $@ $^ $(LUAJIT_LIBS) $(LDLIBS)

# ublk-lua with the test-only backends too (spec/backends/, registered by
# the registry's UBLK_TEST_BACKEND lines): what adding a backend takes,
# proven by spec/guest/test_backend_spec.lua.  A backend there exists to
# test the runtime, so it is kept out of the binary users get (its
# backends list, add -t, the docs table); never installed.
TEST_BACKEND_OBJS := $(patsubst spec/backends/%.c,$(B)/obj/test-backends/%.o,$(wildcard spec/backends/*.c))
$(B)/obj/test-backends:
	mkdir -p $@
$(B)/obj/test-backends/%.o: spec/backends/%.c $(call headers,) | $(B)/obj/test-backends
	$(COMPILE)
$(B)/obj/test-backends/registry.o: runtime/backends/backend.c $(call headers,base backends) | $(B)/obj/test-backends
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -DUBLK_TEST_BACKENDS -c -o $@ $<
$(B)/ublk-lua-test: $(B)/obj/main.o $(BRIDGE_OBJS) $(filter-out $(B)/obj/backends/backend.o,$(OBJS)) \
		$(B)/obj/test-backends/registry.o $(TEST_BACKEND_OBJS)
	$(CC) $(LDFLAGS) -Wl,-E -o $@ $^ $(LUAJIT_LIBS) $(LDLIBS)

# The module for plain LuaJIT (busted, user programs): Lua symbols come
# from the host interpreter, so it does not link libluajit.
$(B)/ublk/core.so: $(BRIDGE_OBJS) $(OBJS) | $(B)/ublk
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(LDLIBS)

# The C backends, the queue's protocol and the device lifecycle's
# decisions on the host's io_uring, no Lua, no kernel ublk (spec/harness/run-host
# runs every one)
$(B)/test-%: spec/c/test_%.c spec/c/host.h spec/c/tap.h $(OBJS)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(OBJS) $(LDLIBS)


# libFuzzer needs clang; the runtime is compiled again with its
# instrumentation (and ASan+UBSan) into the fuzz binary.
$(B)/fuzz-requests: spec/fuzz/fuzz_requests.c $(RUNTIME_SRCS) $(RUNTIME_HDRS)
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -o $@ spec/fuzz/fuzz_requests.c \
		$(RUNTIME_SRCS) $(LDLIBS)

# whatever the kernel says of a device a new server recovers
$(B)/fuzz-recovery: spec/fuzz/fuzz_recovery.c $(RUNTIME_SRCS) $(RUNTIME_HDRS)
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -o $@ spec/fuzz/fuzz_recovery.c \
		$(RUNTIME_SRCS) $(LDLIBS)

FUZZ_SECONDS ?= 60
fuzz: deps $(B)/fuzz-requests $(B)/fuzz-recovery
	@FUZZ_SECONDS=$(FUZZ_SECONDS) spec/harness/run-fuzz

# the options table of docs/backends.md, from the C declarations
docs-options: $(B)/ublk/core.so
	luajit tools/options-doc.lua

deps:
	@spec/harness/deps

run: deps all
	@examples/run-main

test: deps
	@spec/harness/run-all

# the host specs run the bridge and the C tests again under ASan+UBSan:
# their build first (a fresh clone has none)
test-host: deps all
	@$(MAKE) -s SANITIZE=1 all
	@spec/harness/run-host

test-guest: deps all
	@spec/harness/run-guest

bench: deps all
	@QUICK=$(QUICK) PEERS=$(PEERS) RBD=$(RBD) bench/run

# the power-cut bench (bench/crash.sh): recording's cost, states per minute;
# on a guest CPU without ERMS unless told, as bench/run (bench/copy-cost.c),
# and 6 GiB of guest memory: a recorded case keeps 2 GiB of log on /tmp
bench-crash: deps all
	UBLK_VM_CPU_MODEL=$${UBLK_VM_CPU_MODEL:-max,-erms} UBLK_VM_MEM=$${UBLK_VM_MEM:-6G} spec/harness/vm/run sh bench/crash.sh

# what copies cost on the guest's CPU (bench/copy-cost.c says why)
$(B)/copy-cost: bench/copy-cost.c runtime/base/xxh64.c runtime/base/xxh64.h
	$(CC) $(CFLAGS) -Wall -Wextra -o $@ bench/copy-cost.c runtime/base/xxh64.c

bench-copy: $(B)/copy-cost
	spec/harness/vm/run sh -c 'grep -qw erms /proc/cpuinfo && echo "guest CPU: with ERMS" || echo "guest CPU: without ERMS"; $(B)/copy-cost'

# The man page and the shell completion are written from the command
# line's own text and tables (lua/ublk/cli_args.lua): they cannot drift
# from --help.
# (the usage names the registered backends: ublk.core, from this build)
$(B)/ublk-lua.1: contrib/man.lua lua/ublk/cli_args.lua $(B)/ublk/core.so | $(B)/gen
	LUA_CPATH="$(B)/?.so;;" $(LUAJIT) contrib/man.lua $(VERSION) > $@.tmp && mv $@.tmp $@

$(B)/ublk-lua.bash: contrib/completion.lua lua/ublk/cli_args.lua $(B)/ublk/core.so | $(B)/gen
	LUA_CPATH="$(B)/?.so;;" $(LUAJIT) contrib/completion.lua > $@.tmp && mv $@.tmp $@

install: all $(B)/ublk-lua.1 $(B)/ublk-lua.bash
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUADIR)/ublk $(DESTDIR)$(LIBDIR)/ublk \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR)/examples
	install -m 755 $(B)/ublk-lua $(DESTDIR)$(BINDIR)/ublk-lua
	install -m 755 $(B)/ublk/core.so $(DESTDIR)$(LIBDIR)/ublk/core.so
	install -m 644 $(LUA_MODULES) $(DESTDIR)$(LUADIR)/ublk/
	install -m 644 $(B)/ublk-lua.1 $(DESTDIR)$(MANDIR)/man1/ublk-lua.1
	install -m 644 $(B)/ublk-lua.bash $(DESTDIR)$(COMPLETIONDIR)/ublk-lua
	# the unit names where this install put the executable and the docs
	sed -e 's|/usr/local/bin/ublk-lua|$(BINDIR)/ublk-lua|' \
	    -e 's|/usr/local/share/doc/ublk-lua|$(DOCDIR)|' contrib/ublk-lua@.service \
	    > $(DESTDIR)$(UNITDIR)/ublk-lua@.service
	chmod 644 $(DESTDIR)$(UNITDIR)/ublk-lua@.service
	# devices of a user's own (docs/unprivileged.md); udevadm control --reload
	install -d $(DESTDIR)$(UDEVRULESDIR)
	sed -e 's|/usr/local/bin/ublk-lua|$(BINDIR)/ublk-lua|' contrib/udev/70-ublk-lua.rules \
	    > $(DESTDIR)$(UDEVRULESDIR)/70-ublk-lua.rules
	chmod 644 $(DESTDIR)$(UDEVRULESDIR)/70-ublk-lua.rules
	install -m 644 README.md LICENSE CHANGELOG.md $(DESTDIR)$(DOCDIR)/
	install -m 644 docs/*.md $(DESTDIR)$(DOCDIR)/docs/
	install -m 644 examples/*.lua examples/*.sh $(DESTDIR)$(DOCDIR)/examples/
	install -d $(DESTDIR)$(INCLUDEDIR)/ublk-lua $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 runtime/include/backend.h runtime/include/ublk_uapi.h \
		$(DESTDIR)$(INCLUDEDIR)/ublk-lua/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' \
	    -e "s|@ABI@|$$(sed -n 's/^#define UBLK_BACKEND_ABI //p' runtime/include/backend.h)|" \
		runtime/include/ublk-lua-backend.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/ublk-lua-backend.pc

# A release rockspec made from the scm one, its source the committed tree
# (git archive), packed with it into one .src.rock that needs no network.
rock:
	rm -rf build/rock && mkdir -p build/rock
	git archive --prefix=ublk-lua-$(VERSION)/ -o build/rock/ublk-lua-$(VERSION).tar.gz HEAD
	sed -e 's/^version = .*/version = "$(VERSION)-1"/' \
	    -e 's|^source = .*|source = { url = "file://$(CURDIR)/build/rock/ublk-lua-$(VERSION).tar.gz", dir = "ublk-lua-$(VERSION)" }|' \
	    ublk-lua-scm-1.rockspec > build/rock/ublk-lua-$(VERSION)-1.rockspec
	cd build/rock && luarocks --lua-version=5.1 pack ublk-lua-$(VERSION)-1.rockspec

clean:
	rm -rf build build-san
