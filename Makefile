# ublk-lua: one plain Makefile.
#   make            build build/ublk-lua and build/ublk/core.so
#   make run        serve examples/mydisk.lua (in a QEMU guest if this kernel has no ublk)
#   make test       host specs + guest specs on both kernels; last line "N passed, N failed"
#   make bench      side-by-side benchmarks in one guest boot
#   make fuzz       libFuzzer on the request path + seeded property tests
#                   (FUZZ_SECONDS=60 per target; the corpus is spec/fuzz/corpus)
#   make install    PREFIX=/usr/local DESTDIR=
#   make rock       build/rock/ublk-lua-VERSION-1.src.rock: the committed tree as a
#                   LuaRocks source rock (`luarocks --lua-version=5.1 build` it anywhere)
#   WERROR=1 adds -Werror; SANITIZE=1 builds with ASan+UBSan into build-san
PREFIX ?= /usr/local
DESTDIR ?=
LUADIR ?= $(PREFIX)/share/lua/5.1
LIBDIR ?= $(PREFIX)/lib/lua/5.1
BINDIR ?= $(PREFIX)/bin

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
LDLIBS := -luring -lpthread $(NBD_LIBS)

B ?= build
ifeq ($(WERROR),1)
BASE_CFLAGS += -Werror
endif
ifeq ($(SANITIZE),1)
B := build-san
BASE_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# The runtime and the C backends build without LuaJIT on the include path;
# only the bridge (ublk.core and the Lua backend) and main.c include Lua.
RUNTIME := log ctrl device device_stop device_flags device_recover device_owner device_record device_delete stats signals reap watchdog queue queue_api queue_ring queue_batch queue_thread queue_host backend store backend_memory \
	backend_null backend_file backend_nbd nbd_conn nbd_reconnect
BRIDGE := lua_core lua_result lua_device lua_admin lua_host lua_interrupt backend_lua lua_queue lua_call lua_ffi
OBJS := $(RUNTIME:%=$(B)/obj/%.o)
BRIDGE_OBJS := $(BRIDGE:%=$(B)/obj/%.o)
LUA_MODULES := $(wildcard lua/ublk/*.lua)

VERSION := $(shell sed -n 's/^\#define UBLK_LUA_VERSION "\(.*\)"/\1/p' runtime/lua_core.c)

.PHONY: all deps run test test-host test-guest bench fuzz install clean rock
all: $(B)/ublk-lua $(B)/ublk/core.so $(B)/backend-test $(B)/device-test

$(OBJS): $(B)/obj/%.o: runtime/%.c runtime/*.h | $(B)/obj
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c -o $@ $<

$(BRIDGE_OBJS) $(B)/obj/main.o: $(B)/obj/%.o: runtime/%.c runtime/*.h $(B)/gen/lua_ffi_cdef.h \
		$(B)/gen/stats_cdef.h | $(B)/obj
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LUAJIT_CFLAGS) -I$(B)/gen -c -o $@ $<

# What C and Lua share is written once, in a header (runtime/lua_ffi.h, the
# bridge's entry points; runtime/stats.h, the statistics mapping); its FFI
# part becomes a C string that ublk.core hands to Lua (core.cdef,
# core.stats_cdef).
$(B)/gen/%_cdef.h: runtime/%.h | $(B)/gen
	{ echo '/* generated from $< by the Makefile */'; \
	  echo 'static const char ublk_$*_cdef[] ='; \
	  sed -n '/BEGIN FFI/,/END FFI/{/ FFI \*\//d;s/\\/\\\\/g;s/"/\\"/g;s/^/"/;s/$$/\\n"/;p;}' $<; \
	  echo ';'; } > $@

$(B)/obj $(B)/ublk $(B)/gen:
	mkdir -p $@

# The executable exports its symbols (-E) so that FFI code can reach them.
$(B)/ublk-lua: $(B)/obj/main.o $(BRIDGE_OBJS) $(OBJS)
	$(CC) $(LDFLAGS) -Wl,-E -o $@ $^ $(LUAJIT_LIBS) $(LDLIBS)

# The module for plain LuaJIT (busted, user programs): Lua symbols come
# from the host interpreter, so it does not link libluajit.
$(B)/ublk/core.so: $(BRIDGE_OBJS) $(OBJS) | $(B)/ublk
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(LDLIBS)

# C backends on the host's io_uring (spec/run-host runs it): no Lua at all
$(B)/backend-test: spec/c/backend_test.c spec/c/tap.h $(OBJS)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(filter-out %.h,$^) $(LDLIBS)

# the device lifecycle's decisions that need no kernel (spec/run-host)
$(B)/device-test: spec/c/device_test.c spec/c/tap.h $(OBJS)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(filter-out %.h,$^) $(LDLIBS)

# libFuzzer needs clang; the runtime is compiled again with its
# instrumentation (and ASan+UBSan) into the fuzz binary.
$(B)/fuzz-requests: spec/fuzz/fuzz_requests.c $(RUNTIME:%=runtime/%.c) runtime/*.h
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -o $@ spec/fuzz/fuzz_requests.c \
		$(RUNTIME:%=runtime/%.c) $(LDLIBS)

# whatever the kernel says of a device a new server recovers
$(B)/fuzz-recovery: spec/fuzz/fuzz_recovery.c $(RUNTIME:%=runtime/%.c) runtime/*.h
	clang -std=gnu11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -o $@ spec/fuzz/fuzz_recovery.c \
		$(RUNTIME:%=runtime/%.c) $(LDLIBS)

FUZZ_SECONDS ?= 60
fuzz: deps $(B)/fuzz-requests $(B)/fuzz-recovery
	@FUZZ_SECONDS=$(FUZZ_SECONDS) spec/run-fuzz

deps:
	@spec/deps

run: deps all
	@examples/run-main

test: deps
	@spec/run-all

test-host: deps all
	@spec/run-host

test-guest: deps all
	@spec/run-guest

bench: deps all
	@QUICK=$(QUICK) bench/run

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUADIR)/ublk $(DESTDIR)$(LIBDIR)/ublk
	install -m 755 $(B)/ublk-lua $(DESTDIR)$(BINDIR)/ublk-lua
	install -m 755 $(B)/ublk/core.so $(DESTDIR)$(LIBDIR)/ublk/core.so
	install -m 644 $(LUA_MODULES) $(DESTDIR)$(LUADIR)/ublk/

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
