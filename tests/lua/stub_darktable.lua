--[[ A stand-in for darktable's Lua API (9.0.0), just wide enough to load lua/deconvolve.lua in
     plain lua5.4 and watch what it registers. `stub.new{...}` installs a fresh `darktable`
     module; what the script did lands in the returned table's lists. ]]

local stub = {}

local function widget_factory(log)
  return function(kind)
    return function(props)
      local widget = { kind = kind }
      for key, value in pairs(props) do
        widget[key] = value
      end
      log[#log + 1] = widget
      return widget
    end
  end
end

-- A stand-in for a dt_lua_image_t: the fields the plug-in reads and writes, and group_with.
-- Like darktable's, the library holds each file once: importing a known path returns its image;
-- each image's `film` lists the library's images of its folder (`#film`, `film[i]`).
function stub.image(rec, path)
  local database = rec.dt and rec.dt.database or {}
  for _, known in ipairs(database) do
    if known.path .. "/" .. known.filename == path then
      return known
    end
  end
  local folder, filename = path:match("^(.*)/([^/]+)$")
  rec.next_id = (rec.next_id or 0) + 1
  local image = {
    id = rec.next_id, path = folder, filename = filename, sidecar = path .. ".xmp",
    duplicate_index = 0, width = 400, height = 300, rating = 1, tags = {},
  }
  rec.films = rec.films or {}
  rec.films[folder] = rec.films[folder] or {}
  image.film = rec.films[folder]
  image.film[#image.film + 1] = image
  image.group_leader = image
  function image.group_with(self, other)
    self.group_leader = other.group_leader
  end
  database[#database + 1] = image
  return image
end

function stub.new(options)
  local rec = {
    toasts = {},
    preferences = {}, -- registered: name -> {type, label, tooltip, default}
    conf = options.conf or {}, -- "name" -> value
    events = {}, -- "name/type" -> {fn, extra}
    libs = {},
    widgets = {},
    dispatched = {},
    jobs = {},
    imported = {},
    exports = {},
  }
  local dt = {
    configuration = {
      has_gui = options.has_gui ~= false,
      api_version_major = options.api_major or 9,
      api_version_string = "9.0.0",
      config_dir = options.config_dir or "/nonexistent/config",
      tmp_dir = options.tmp_dir or "/tmp",
    },
    gettext = {
      bindtextdomain = function() end,
      dgettext = function(_, msgid)
        return msgid
      end,
      gettext = function(msgid)
        return msgid
      end,
    },
    gui = {
      views = { lighttable = { id = "lighttable" }, darkroom = { id = "darkroom" } },
      libs = {},
      selection = function()
        return options.selection or {}
      end,
      current_view = function()
        return { id = options.view or "lighttable" }
      end,
      create_job = function(text, bar, cancel)
        local job = { text = text, valid = true, percent = 0, cancel = cancel }
        rec.jobs[#rec.jobs + 1] = job
        return job
      end,
    },
    control = {
      dispatch = function(fn, ...)
        rec.dispatched[#rec.dispatched + 1] = { fn = fn, args = { ... } }
      end,
      read = function()
        if rec.on_read then
          rec.on_read() -- where darktable would run other Lua work, e.g. a cancel button
        end
      end,
      sleep = function() end,
    },
    database = {
      delete = function(image)
        for index, known in ipairs(rec.dt.database) do
          if known == image then
            table.remove(rec.dt.database, index)
          end
        end
        rec.deleted = (rec.deleted or 0) + 1
      end,
      import = function(path)
        local file = assert(io.open(path), "importing a missing file ends darktable 4.2")
        file:close()
        if rec.on_import then -- (what darktable's other jobs do meanwhile: a test's removal)
          rec.on_import(path)
        end
        local image = stub.image(rec, path)
        rec.imported[#rec.imported + 1] = image
        return image
      end,
    },
    tags = {
      create = function(name)
        return { name = name }
      end,
      attach = function(tag, image)
        image.tags[#image.tags + 1] = tag
      end,
      get_tags = function(image)
        return image.tags
      end,
    },
    new_format = function(kind)
      assert(kind == "tiff")
      return {
        write_image = function(self, image, path)
          rec.exports[#rec.exports + 1] = { bpp = self.bpp, path = path }
          local file = assert(io.open(path, "w"))
          file:write("pixels of " .. image.filename)
          file:close()
          if rec.on_export then -- (what happens while darktable exports: a test's edit)
            rec.on_export(image, path)
          end
          return false -- API 9.0.0: false means success
        end,
      }
    end,
    preferences = {
      register = function(script, name, kind, label, tooltip, default)
        rec.preferences[script .. "/" .. name] =
          { type = kind, label = label, tooltip = tooltip, default = default }
      end,
      read = function(script, name, kind)
        local value = rec.conf[script .. "/" .. name]
        if value == nil then
          local registered = rec.preferences[script .. "/" .. name]
          value = registered and registered.default
        end
        if value == nil then
          value = (kind == "bool" and false) or ((kind == "string" or kind == "file") and "") or 0
        end
        return value
      end,
      write = function(script, name, _, value)
        rec.conf[script .. "/" .. name] = value
      end,
    },
    print = function(text)
      rec.toasts[#rec.toasts + 1] = text
    end,
    print_log = function() end,
    print_error = function() end,
    register_event = function(name, kind, fn, extra)
      rec.events[name .. "/" .. kind] = { fn = fn, extra = extra }
    end,
    destroy_event = function(name, kind)
      assert(rec.events[name .. "/" .. kind], "destroying an event never registered: " .. name)
      rec.events[name .. "/" .. kind] = nil
    end,
    register_lib = function(name, label, expandable, resetable, containers, widget)
      assert(not rec.libs[name], "a lib registered twice: " .. name)
      rec.libs[name] = { label = label, containers = containers, widget = widget }
    end,
  }
  dt.new_widget = widget_factory(rec.widgets)
  setmetatable(dt.gui.libs, {
    __index = function(libs, name)
      if rec.libs[name] then
        libs[name] = { visible = true }
        return libs[name]
      end
    end,
  })
  -- Run what the script handed to dt.control.dispatch, as darktable does later on.
  function rec.run_dispatched()
    while #rec.dispatched > 0 do
      local call = table.remove(rec.dispatched, 1)
      call.fn(table.unpack(call.args))
    end
  end
  package.loaded["darktable"] = dt
  rec.dt = dt
  return rec
end

--- Load the plug-in afresh (as darktable's require would); returns its script_data.
function stub.load_plugin()
  package.loaded["deconvolve"] = nil
  return require "deconvolve"
end

return stub
