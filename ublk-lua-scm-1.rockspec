-- luarocks --lua-version=5.1 make ublk-lua-scm-1.rockspec
package = "ublk-lua"
version = "scm-1"
source = { url = "git+file://./ublk-lua" }
description = {
  summary = "Lua-scriptable runtime for Linux ublk userspace block devices",
  detailed = [[
    A C runtime for the ublk control path and io_uring data plane, driven
    from LuaJIT: describe block devices in Lua, serve them with
    `ublk-lua script.lua`, prototype backends in Lua, test them with busted.
  ]],
  license = "MIT",
}
dependencies = { "lua >= 5.1, < 5.2" }
external_dependencies = {
  LIBURING = { header = "liburing.h", library = "uring" },
}
build = {
  type = "make",
  build_target = "all",
  build_variables = { CFLAGS = "$(CFLAGS)" },
  install_variables = {
    PREFIX = "$(PREFIX)", BINDIR = "$(BINDIR)",
    LUADIR = "$(LUADIR)", LIBDIR = "$(LIBDIR)",
  },
}
