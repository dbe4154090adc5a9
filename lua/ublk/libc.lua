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
long pread(int fd, void *buf, size_t n, int64_t off);
long pwrite(int fd, const void *buf, size_t n, int64_t off);
int64_t lseek(int fd, int64_t off, int whence);
long readlink(const char *path, char *buf, size_t len);
int mkdir(const char *path, unsigned mode);
int truncate(const char *path, int64_t length);
int ftruncate(int fd, int64_t length);
int flock(int fd, int op);
void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
int munmap(void *addr, size_t len);
int getpid(void);
int kill(int pid, int sig);
int waitpid(int pid, int *status, int options);
void _exit(int status);
long syscall(long number, ...);
struct ublk_pollfd { int fd; short events, revents; };
int poll(struct ublk_pollfd *fds, unsigned long n, int timeout);
long read(int fd, void *buf, unsigned long n);
int inotify_init1(int flags);
int inotify_add_watch(int fd, const char *path, uint32_t mask);
struct ublk_sockaddr_in { uint16_t sin_family; uint16_t sin_port; uint8_t sin_addr[4]; uint8_t zero[8]; };
struct ublk_sockaddr_in6 { uint16_t sin6_family; uint16_t sin6_port; uint32_t flow;
                           uint8_t sin6_addr[16]; uint32_t scope; };
struct ublk_sockaddr_un { uint16_t sun_family; char sun_path[108]; };
int socket(int domain, int type, int protocol);
int setsockopt(int fd, int level, int name, const void *value, unsigned len);
int bind(int fd, const void *addr, unsigned len);
int connect(int fd, const void *addr, unsigned len);
int listen(int fd, int backlog);
int accept4(int fd, void *addr, unsigned *len, int flags);
long send(int fd, const void *buf, size_t n, int flags);
long recv(int fd, void *buf, size_t n, int flags);
int inet_pton(int family, const char *text, void *out);
uint16_t htons(uint16_t port);
struct ublk_statx { uint32_t mask, blksize; uint64_t attributes; uint32_t nlink, uid, gid;
                    uint16_t mode, pad; uint8_t rest[232]; };
int statx(int dirfd, const char *path, int flags, unsigned mask, struct ublk_statx *buf);
]]

local bit = require "bit"

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

-- Reaps child pid if it has ended (waiting for it to when `block`):
-- "exit", code | "signal", number; false while it runs; nil, errno when
-- waitpid fails (not a child of this process, or reaped already).
local wstatus = ffi.new("int[1]")
function libc.reap(pid, block)
  local r = ffi.C.waitpid(pid, wstatus, block and 0 or 1) -- WNOHANG
  if r == 0 then return false end
  if r < 0 then return nil, ffi.errno() end
  local sig = bit.band(wstatus[0], 0x7f)
  if sig == 0 then return "exit", bit.band(bit.rshift(wstatus[0], 8), 0xff) end
  return "signal", sig
end

-- The type bits of path's mode (S_IFMT: 0xc000 a socket, 0x8000 a file),
-- not following a symbolic link | nil, errno.
local stx = ffi.new("struct ublk_statx")
function libc.file_type(path)
  -- AT_FDCWD, AT_SYMLINK_NOFOLLOW, STATX_TYPE
  if ffi.C.statx(-100, path, 0x100, 1, stx) ~= 0 then return nil, ffi.errno() end
  return bit.band(stx.mode, 0xf000)
end

return libc
