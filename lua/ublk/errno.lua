-- ublk.errno: Linux errno names and numbers, both ways, so that handlers
-- can fail an I/O with `return nil, "ENOSPC"` and read results by name.
-- A name not here still fails an I/O with its number after it
-- (`return nil, "ENOKEY: ...", 126`), as a helper's failure gives it.
local names = {
  EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7,
  EBADF = 9, EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, ENOTBLK = 15,
  EBUSY = 16, EEXIST = 17, EXDEV = 18, ENODEV = 19, ENOTDIR = 20, EISDIR = 21,
  EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOTTY = 25, ETXTBSY = 26, EFBIG = 27,
  ENOSPC = 28, ESPIPE = 29, EROFS = 30, EMLINK = 31, EPIPE = 32, ERANGE = 34,
  EDEADLK = 35, ENAMETOOLONG = 36, ENOSYS = 38, ENOTEMPTY = 39, ELOOP = 40,
  ENODATA = 61, ETIME = 62, ENOLINK = 67, EPROTO = 71, EBADMSG = 74, EOVERFLOW = 75,
  EILSEQ = 84, ENOTSOCK = 88, EOPNOTSUPP = 95, ENOTSUP = 95, EADDRINUSE = 98,
  EADDRNOTAVAIL = 99, ENETDOWN = 100, ENETUNREACH = 101, ENETRESET = 102,
  ECONNABORTED = 103, ECONNRESET = 104, ENOBUFS = 105, ENOTCONN = 107,
  ESHUTDOWN = 108, ETIMEDOUT = 110, ECONNREFUSED = 111, EHOSTDOWN = 112,
  EHOSTUNREACH = 113, EALREADY = 114, EINPROGRESS = 115, ESTALE = 116,
  EREMOTEIO = 121, EDQUOT = 122, ENOMEDIUM = 123, EMEDIUMTYPE = 124, ECANCELED = 125,
}
local errno = {}
for name, n in pairs(names) do
  errno[name] = n
  if errno[n] == nil or name ~= "ENOTSUP" then errno[n] = name end
end
return errno
