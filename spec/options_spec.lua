-- The C backends' option declarations (runtime/include/backend.h) as Lua
-- sees them through core.backends(): well formed, the one source of the
-- options table in docs/backends.md, and no backend named in lua/ublk.
local core = require "ublk.core"
local options = require "ublk.options"

local KINDS = { string = true, bool = true, int = true, seconds = true, choice = true, uri = true }

describe("C backend option declarations", function()
  it("give each option a known kind, one help line, and what its kind needs", function()
    local backends = core.backends()
    assert.is_true(#backends >= 1)
    for _, b in ipairs(backends) do
      assert.matches("^[%a_][%w_%-]*$", b.name)
      local seen = {}
      for _, o in ipairs(b.options) do
        local what = b.name .. "." .. tostring(o.name)
        assert.matches("^[%a_][%w_]*$", o.name, 1, false, what)
        assert.is_nil(seen[o.name], what .. " declared twice")
        seen[o.name] = true
        assert.is_true(KINDS[o.kind], what)
        assert.is_true(#o.help > 0 and not o.help:find("\n"), what)
        if o.kind == "choice" or o.kind == "uri" then
          assert.is_true(#o.values >= 1, what)
        end
        if o.kind == "int" or o.kind == "seconds" then
          assert.is_true(o.min <= o.max, what)
        end
      end
    end
  end)

  it("are the options table of docs/backends.md (make docs-options writes it)", function()
    local f = assert(io.open("docs/backends.md", "rb"))
    local doc = f:read("*a")
    f:close()
    local table_in_doc = doc:match("<!%-%- options table:[^\n]*%-%->\n(.-)<!%-%- end of options table %-%->")
    assert.is_not_nil(table_in_doc, "docs/backends.md: no options table markers")
    assert.are.equal(options.markdown(), table_in_doc)
  end)

  it("leave no backend named in lua/ublk's code (comments aside)", function()
    local names = {}
    for _, b in ipairs(core.backends()) do names[#names + 1] = b.name end
    local p = io.popen("ls lua/ublk/*.lua")
    for path in p:lines() do
      local n = 0
      for line in io.lines(path) do
        n = n + 1
        local code = line:gsub("%-%-.*$", "")
        for _, name in ipairs(names) do
          for _, q in ipairs({ '"', "'" }) do
            local hit = code:find(q .. name .. q, 1, true)
            -- JSON's own null (json.lua) is no backend
            if hit and not (path:match("json%.lua$") and name == "null") then
              error(("%s:%d names backend %q: %s"):format(path, n, name, line))
            end
          end
          assert.is_nil(code:find("ublk%." .. name .. "[^%w_]"), path .. ":" .. n .. ": " .. line)
        end
      end
    end
    p:close()
  end)
end)

describe("a test-only C backend (spec/backends/, UBLK_TEST_BACKEND)", function()
  local function run(bin, args) return require("shell").run(bin .. " " .. args) end

  it("is in build/ublk-lua-test, from its declaration alone, and not in build/ublk-lua", function()
    local rc, out = run("build/ublk-lua-test", "add -t pattern --help")
    assert.are.equal(0, rc, out)
    assert.matches("--seed N", out, 1, true)
    assert.matches("byte o holds (o + seed) % 251", out, 1, true)
    rc, out = run("build/ublk-lua", "add -t pattern -s 1MiB")
    assert.are.equal(2, rc, out)
    assert.matches("unknown backend 'pattern'", out, 1, true)
  end)
end)
