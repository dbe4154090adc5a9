-- ublk.options: the C backends' options, as each declares them beside its
-- ops table (runtime/include/backend.h, struct ublk_backend_opt; read
-- through core.backends()).  Everything users see of them comes from here:
-- the checks params.lua and ublk.NAME{} make, the strings create() gets,
-- `ublk-lua add -t NAME --OPTION VALUE`, `add -t NAME --help`, and the
-- table in docs/backends.md.  No backend is named in this file.
local core = require "ublk.core"

local options = {}

local format, concat, ceil, floor = string.format, table.concat, math.ceil, math.floor

-- What is worked out of a list of declarations, kept while the list
-- lives: a device made is checked against the same list every time, and
-- its garbage would stay in the server's memory (manage_spec counts it).
local by_list = setmetatable({}, { __mode = "k" })
local names_of = setmetatable({}, { __mode = "k" })

-- Files option o under declaration d's `by` (and `store_opt`).
local function file_option(d, o)
  d.by[o.name] = o
  if o.store and not d.store_opt then d.store_opt = o.name end
end

-- The backends by name; each gets `by`, its options by name,
-- `plugin_opts`, those that name a plugin (backend.h, UBLK_OPT_PLUGIN),
-- and `store_opt`, the name of the one that holds its data beyond the
-- server (UBLK_OPT_STORE) if any: asked for each device and object made,
-- worked out once.
local function index(decls)
  local t = by_list[decls]
  if t then return t end
  t = {}
  for _, b in ipairs(decls) do
    if not b.plugin_opts then
      b.by, b.plugin_opts = {}, {}
      for _, o in ipairs(b.options) do
        file_option(b, o)
        if o.plugin then b.plugin_opts[#b.plugin_opts + 1] = o end
      end
    end
    t[b.name] = b
  end
  by_list[decls] = t
  return t
end

local list, by_name -- core.backends(), read once

-- options.backends([decls]) -> the declarations as a list, and by name:
-- core.backends()'s, or `decls` (a list of the same shape) when given.
function options.backends(decls)
  if decls then return decls, index(decls) end
  if not list then list = core.backends(); by_name = index(list) end
  return list, by_name
end

-- A plugin's declaration joined to the plugin backend's (its path option
-- first), by path: loaded once, as the runtime keeps it loaded.
local plugins = {}

local function plugin_decl(b, o, path)
  local key = b.name .. "\0" .. path
  if plugins[key] then return plugins[key] end
  local p, err = core.plugin(path)
  if not p then return nil, err end
  local d = { name = b.name, plugin = p.name, sizes_itself = p.sizes_itself,
    options = { o }, by = {} }
  for _, x in ipairs(p.options) do d.options[#d.options + 1] = x end
  for _, x in ipairs(d.options) do file_option(d, x) end
  plugins[key] = d
  return d
end

-- options.find(name [, decls [, t]]) -> backend name's declaration, or nil.
-- With t (a device table, backend object or parameters) and a backend
-- whose option declares a plugin (backend.h, UBLK_OPT_PLUGIN) that t
-- names: that plugin's declaration, or nil, "ENAME: why it cannot load".
function options.find(name, decls, t)
  local _, by = options.backends(decls)
  local b = by[name]
  if not (b and t) then return b end
  for _, o in ipairs(b.plugin_opts) do
    if type(t[o.name]) == "string" and t[o.name] ~= "" then
      return plugin_decl(b, o, t[o.name])
    end
  end
  return b
end

-- Every option name any backend declares, sorted: they are device fields.
-- The same table each time for a list: not to be changed.
function options.names(decls)
  local list = options.backends(decls)
  if names_of[list] then return names_of[list] end
  local seen, out = {}, {}
  for _, b in ipairs(list) do
    for _, o in ipairs(b.options) do
      if not seen[o.name] then seen[o.name], out[#out + 1] = true, o.name end
    end
  end
  table.sort(out)
  names_of[list] = out
  return out
end

-- The backends that declare option `name`, as words: "the memory and file
-- backends".
function options.owners(name, decls)
  local out = {}
  local all = options.backends(decls)
  for _, b in ipairs(all) do
    if b.by[name] then out[#out + 1] = b.name end
  end
  if #out == 1 then return "the " .. out[1] .. " backend" end
  return "the " .. concat(out, ", ", 1, #out - 1) .. " and " .. out[#out] .. " backends"
end

local function num(n)
  if n == floor(n) then return format("%d", n) end
  return tostring(n)
end

-- '"a", "b" or "c"'
local function alternatives(values, quote)
  local q = {}
  for i, v in ipairs(values) do q[i] = quote and format("%q", v) or v end
  if #q == 1 then return q[1] end
  return concat(q, ", ", 1, #q - 1) .. " or " .. q[#q]
end

-- What option o allows, in words, for messages and help.
function options.rule(o)
  if o.kind == "bool" then return "must be true or false"
  elseif o.kind == "int" then
    return format("must be an integer from %s to %s", num(o.min), num(o.max))
  elseif o.kind == "seconds" then
    return format("must be a number of seconds from %s to %s", num(o.min), num(o.max))
  elseif o.kind == "choice" then return "must be " .. alternatives(o.values, true)
  elseif o.kind == "uri" then return "must be a string starting with " .. concat(o.values, ", ")
  end
  return "must be a non-empty string"
end

-- options.check(o, v) -> v (normalised) | nil, rule: value v for option o.
-- not (v >= min) also refuses nan.
function options.check(o, v)
  local k = o.kind
  if k == "bool" then
    if type(v) == "boolean" then return v end
  elseif k == "int" then
    if type(v) == "number" and v == floor(v) and v >= o.min and v <= o.max then return v end
  elseif k == "seconds" then
    if type(v) == "number" and v >= o.min and v <= o.max then return v end
  elseif k == "choice" then
    for _, c in ipairs(o.values) do if v == c then return v end end
  elseif k == "uri" then
    if type(v) == "string" then
      for _, s in ipairs(o.values) do if v:sub(1, #s) == s then return v end end
    end
  elseif type(v) == "string" and v ~= "" then
    return v
  end
  return nil, options.rule(o)
end

-- The string create() gets for a checked value (backend.h's kinds).
function options.to_c(o, v)
  if o.kind == "bool" then return v and "1" or "0" end
  if o.kind == "int" then return format("%d", v) end
  if o.kind == "seconds" then return format("%d", ceil(v * 1000)) end
  return v
end

-- options.from_cli(o, word) -> the value a command line's word stands for,
-- or the word itself when it stands for none (check() then refuses it).
function options.from_cli(o, word)
  if o.kind == "bool" then
    if word == "true" or word == "1" then return true end
    if word == "false" or word == "0" then return false end
  elseif o.kind == "int" or o.kind == "seconds" then
    return tonumber(word) or word
  end
  return word
end

local function default_of(o)
  if o.default then return o.default end
  return o.required and "required" or "-"
end

local function allowed(o)
  if o.kind == "choice" then return alternatives(o.values) end
  if o.kind == "uri" then return concat(o.values, " ") end
  if o.kind == "int" or o.kind == "seconds" then
    return format("%s %s to %s", o.kind == "int" and "integer" or "seconds", num(o.min), num(o.max))
  end
  return o.kind == "bool" and "true, false" or "string"
end

-- `ublk-lua add -t NAME --help`: the backend's options, one a line.
-- decl: the declaration to list, when not the registry's (a plugin's)
function options.help(name, decls, decl)
  local b = decl or options.find(name, decls)
  local out = { format("Options of the %s backend (also fields of a device table with"
    .. " backend = %q, and of ublk.%s{}):", name, name, name) }
  if #b.options == 0 then out[#out + 1] = "  none" end
  for _, o in ipairs(b.options) do
    local word = ({ int = "N", seconds = "SECONDS", uri = "URI", choice = "MODE" })[o.kind]
    local flag = o.kind == "bool" and format("--%s[=false]", o.name)
      or format("--%s %s", o.name, word or o.name:upper())
    if #flag > 26 then
      out[#out + 1] = "  " .. flag
      flag = ""
    end
    out[#out + 1] = format("  %-26s %s", flag, o.help)
    out[#out + 1] = format("  %-26s %s; default: %s", "", allowed(o), default_of(o))
  end
  if b.sizes_itself then
    out[#out + 1] = "Without -s SIZE the backend gives the size."
  end
  return concat(out, "\n") .. "\n"
end

-- The options table of docs/backends.md (a host spec compares them).
function options.markdown(decls)
  local out = { "| backend | option | values | default | what it does |",
    "|---|---|---|---|---|" }
  for _, b in ipairs((options.backends(decls))) do
    local name = b.name .. (b.sizes_itself and " (sizes itself)" or "")
    if #b.options == 0 then
      out[#out + 1] = format("| %s | (none) | | | |", name)
    end
    for _, o in ipairs(b.options) do
      out[#out + 1] = format("| %s | `%s` | %s | %s | %s |", name, o.name,
        allowed(o):gsub("|", "\\|"), default_of(o), o.help)
    end
  end
  return concat(out, "\n") .. "\n"
end

return options
