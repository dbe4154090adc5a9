-- ublk.errno: Linux errno names and numbers, both ways, so that handlers
-- can fail an I/O with `return nil, "ENOSPC"` and read results by name.
local names = {
  EPERM = 1, ENOENT = 2, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7, EBADF = 9,
  EAGAIN = 11, ENOMEM = 12, EACCES = 13, EFAULT = 14, EBUSY = 16, EEXIST = 17,
  ENODEV = 19, EINVAL = 22, EFBIG = 27, ENOSPC = 28, ESPIPE = 29, EROFS = 30,
  ERANGE = 34, EDEADLK = 35, ENOSYS = 38, ENODATA = 61, ETIME = 62, ENOLINK = 67,
  EBADMSG = 74, EOVERFLOW = 75, EILSEQ = 84, EOPNOTSUPP = 95, ENOTSUP = 95,
  ETIMEDOUT = 110, EINPROGRESS = 115, ECANCELED = 125, EREMOTEIO = 121, EDQUOT = 122,
  EMEDIUMTYPE = 124, ENOMEDIUM = 123,
}
local errno = {}
for name, n in pairs(names) do
  errno[name] = n
  if errno[n] == nil or name ~= "ENOTSUP" then errno[n] = name end
end
return errno
