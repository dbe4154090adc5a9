-- ublk.metrics_http: `ublk-lua stats --prom --listen ADDR`: the exposition
-- text (ublk.metrics) on GET /metrics, for a Prometheus server to scrape.
--
-- Its own process, as node_exporter is: it reads the servers' statistics
-- mappings (ublk.stats), which the queues fill without locks, so a scrape
-- costs the data path nothing but the cache lines it reads.  One
-- connection at a time, each answered and closed: a scraper asks every
-- few seconds, and a connection gets 2 s in all to ask and take the
-- answer, however it trickles.
-- The devices are found again at every scrape, so a device added or
-- removed later shows, or stops showing, at the next one.
local ffi = require "ffi"
local core = require "ublk.core"
local libc = require "ublk.libc"

local C = libc.C

local AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
local SOCK_STREAM, SOCK_CLOEXEC = 1, 0x80000
local SOL_SOCKET, SO_REUSEADDR = 1, 2
local POLLIN, MSG_NOSIGNAL = 1, 0x4000
local EINTR, EAGAIN, ECONNREFUSED = 4, 11, 111
local S_IFSOCK = 0xc000

local http = {}

-- ADDR -> sockaddr, its length, family | nil, "why": HOST:PORT with an
-- IPv4 host, [HOST]:PORT with an IPv6 one, or a unix socket's path (a
-- word with a '/').
function http.address(addr)
  if addr:find("/", 1, true) then
    local sa = ffi.new("struct ublk_sockaddr_un")
    if #addr >= ffi.sizeof(sa.sun_path) then
      return nil, ("--listen '%s': a unix socket path is at most %d bytes"):format(addr,
        ffi.sizeof(sa.sun_path) - 1)
    end
    sa.sun_family = AF_UNIX
    ffi.copy(sa.sun_path, addr)
    return sa, ffi.sizeof(sa), AF_UNIX
  end
  local host, port = addr:match("^%[([%x:.]+)%]:(%d+)$")
  local family = AF_INET6
  if not host then
    host, port = addr:match("^([%d.]+):(%d+)$")
    family = AF_INET
  end
  port = tonumber(port)
  local bad = ("--listen '%s': give HOST:PORT (127.0.0.1:9850), [HOST]:PORT (IPv6) "
    .. "or a unix socket's path"):format(addr)
  if not host or port < 1 or port > 65535 then return nil, bad end
  local sa = ffi.new(family == AF_INET and "struct ublk_sockaddr_in" or "struct ublk_sockaddr_in6")
  if C.inet_pton(family, host, family == AF_INET and sa.sin_addr or sa.sin6_addr) ~= 1 then
    return nil, bad
  end
  if family == AF_INET then
    sa.sin_family, sa.sin_port = AF_INET, C.htons(port)
  else
    sa.sin6_family, sa.sin6_port = AF_INET6, C.htons(port)
  end
  return sa, ffi.sizeof(sa), family
end

-- The listening socket | nil, "ENAME: message" naming ADDR.
function http.listen(addr)
  local sa, len, family = http.address(addr)
  if not sa then return nil, len end
  local fd = C.socket(family, SOCK_STREAM + SOCK_CLOEXEC, 0)
  if fd < 0 then return nil, ("--listen '%s': %s"):format(addr, core.errmsg(ffi.errno())) end
  C.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ffi.new("int[1]", 1), ffi.sizeof("int"))
  -- a socket file nobody listens on is one a killed exporter left
  -- (a connect to any other kind of file is refused too: a socket only)
  if family == AF_UNIX and libc.file_type(addr) == S_IFSOCK then
    local probe = C.socket(AF_UNIX, SOCK_STREAM + SOCK_CLOEXEC, 0)
    if C.connect(probe, ffi.cast("const void *", sa), len) < 0 and ffi.errno() == ECONNREFUSED then
      os.remove(addr)
    end
    C.close(probe)
  end
  if C.bind(fd, ffi.cast("const void *", sa), len) < 0 or C.listen(fd, 16) < 0 then
    local e = ffi.errno()
    C.close(fd)
    return nil, ("--listen '%s': %s"):format(addr, core.errmsg(e))
  end
  return fd, family
end

-- A connection has 2 s in all (CONNECTION_S) to send its request and take
-- the answer: each recv and send waits in poll for what is left of it, so
-- a client that trickles a byte at a time holds the exporter no longer.
local CONNECTION_S = 2
local POLLOUT, MSG_DONTWAIT = 4, 0x40
local pfd = ffi.new("struct ublk_pollfd[1]")

-- Waits until fd is ready for `events` before the deadline: true, or
-- false once it has passed.
local function ready(fd, events, deadline)
  while true do
    local left = math.floor((deadline - libc.clock()) * 1000)
    if left <= 0 then return false end
    pfd[0].fd, pfd[0].events, pfd[0].revents = fd, events, 0
    local n = C.poll(pfd, 1, left)
    if n > 0 then return true end
    if n < 0 and ffi.errno() ~= EINTR then return false end
  end
end

local function send_all(fd, text, deadline)
  local p, left = ffi.cast("const char *", text), #text
  while left > 0 do
    if not ready(fd, POLLOUT, deadline) then return false end
    local n = C.send(fd, p, left, MSG_NOSIGNAL + MSG_DONTWAIT)
    if n < 0 then
      local e = ffi.errno()
      if e ~= EINTR and e ~= EAGAIN then return false end -- gone
    else
      p, left = p + n, left - n
    end
  end
  return true
end

local REASON = { [200] = "OK", [404] = "Not Found", [405] = "Method Not Allowed",
  [400] = "Bad Request" }

local function respond(fd, deadline, status, body, ctype)
  send_all(fd, ("HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
    .. "Connection: close\r\n\r\n%s"):format(status, REASON[status],
    ctype or "text/plain; charset=utf-8", #body, body), deadline)
end

-- The request's head (up to its blank line, 8 KiB at most) | nil.
local buf = ffi.new("char[8192]")
local function read_head(fd, deadline)
  local got = 0
  while got < ffi.sizeof(buf) do
    if not ready(fd, POLLIN, deadline) then return nil end
    local n = C.recv(fd, buf + got, ffi.sizeof(buf) - got, MSG_DONTWAIT)
    if n < 0 then
      local e = ffi.errno()
      if e ~= EINTR and e ~= EAGAIN then return nil end
      n = 0
    elseif n == 0 then
      return nil -- the client closed
    end
    got = got + n
    local head = ffi.string(buf, got)
    if head:find("\r?\n\r?\n") then return head end
  end
  return nil
end

-- Answers one connection: scrape() gives /metrics's text.
function http.serve(fd, scrape)
  local deadline = libc.clock() + CONNECTION_S
  local head = read_head(fd, deadline)
  local method, path = (head or ""):match("^(%u+) (%S+) HTTP/1%.[01]\r?\n")
  if not method then
    if head then respond(fd, deadline, 400, "bad request\n") end
  elseif method ~= "GET" then
    respond(fd, deadline, 405, "only GET\n")
  elseif path:gsub("%?.*", "") == "/metrics" then -- a query (?name[]=...) asks nothing more
    respond(fd, deadline, 200, scrape(), "text/plain; version=0.0.4; charset=utf-8")
  elseif path:gsub("%?.*", "") == "/" then
    respond(fd, deadline, 200, "ublk-lua metrics: GET /metrics\n")
  else
    respond(fd, deadline, 404, "not found: GET /metrics\n")
  end
end

-- Serves until a termination signal: 0, or 1 with the reason written by
-- complain().  say() is told where, once it listens.
function http.run(addr, scrape, complain, say)
  local lfd, family = http.listen(addr)
  if not lfd then complain(family) return 1 end
  say(family == AF_UNIX and ("serving /metrics on the unix socket %s"):format(addr)
    or ("serving http://%s/metrics"):format(addr))
  local lp = ffi.new("struct ublk_pollfd[1]")
  lp[0].fd, lp[0].events = lfd, POLLIN
  while not core.signal_received() do
    if C.poll(lp, 1, 250) > 0 then
      local fd = C.accept4(lfd, nil, nil, SOCK_CLOEXEC)
      if fd >= 0 then
        http.serve(fd, scrape)
        C.close(fd)
      elseif ffi.errno() ~= EINTR and ffi.errno() ~= EAGAIN then
        complain(("--listen '%s': accept: %s"):format(addr, core.errmsg(ffi.errno())))
        libc.sleep(0.1) -- out of fds, say: not a loop that only logs
      end
    end
  end
  C.close(lfd)
  if family == AF_UNIX then os.remove(addr) end
  return 0
end

return http
