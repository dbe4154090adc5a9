-- ublk.libc: the C library calls ublk-lua's Lua code makes through the
-- FFI, declared once.  LuaJIT refuses a second declaration of a name, so
-- files that each declared what they used had to wrap them in pcall and
-- could silently disagree; requiring this module is the declaration.
-- Runtime entry points come from the C headers instead (core.cdef).
local ffi = require "ffi"

ffi.cdef [[
struct ublk_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct ublk_timespec *ts);
int nanosleep(const struct ublk_timespec *req, struct ublk_timespec *rem);
int open(const char *path, int flags, ...);
int close(int fd);
long write(int fd, const void *buf, unsigned long n);
long readlink(const char *path, char *buf, size_t len);
int mkdir(const char *path, unsigned mode);
int rename(const char *old, const char *new);
int truncate(const char *path, int64_t length);
void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
int munmap(void *addr, size_t len);
int getpid(void);
int kill(int pid, int sig);
int waitpid(int pid, int *status, int options);
void _exit(int status);
long syscall(long number, ...);
]]

local libc = { C = ffi.C }

local CLOCK_MONOTONIC = 1
local ts = ffi.new("struct ublk_timespec")

-- Seconds on the monotonic clock: the runtime's clock (runtime/base/clock.h).
function libc.clock()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- Sleeps s seconds (a fraction too), whatever signal handling the
-- process has: not core.wait_signal, which returns at once once a signal
-- has come.
function libc.sleep(s)
  ffi.C.nanosleep(ffi.new("struct ublk_timespec", math.floor(s), (s % 1) * 1e9), nil)
end

-- Polls cond() every `step` seconds (0.025 unless given) for up to `secs`:
-- whether it came true.  It is asked once more at the end, so a condition
-- met during the last sleep counts.  Polling, as the waits it serves are
-- for other processes (a server to end, a file to appear) that signal
-- nothing this process could block on.
function libc.wait_until(cond, secs, step)
  step = step or 0.025
  for _ = 1, math.floor(secs / step + 0.5) do
    if cond() then return true end
    libc.sleep(step)
  end
  return cond() and true or false
end

return libc
