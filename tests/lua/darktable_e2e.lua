--[[ Runs inside a real darktable (started by tests/lua/test_darktable.py with --luacmd): uses the
     deconvolve plug-in as a photographer would and writes what it saw, one `name<TAB>value` line
     each, to $DT_E2E_REPORT. Environment: DT_E2E_PICTURES (folder holding blurred.tif,
     cancel.tif and tiny.tif, deblurred as finished pictures, and shaken.dng and sharp.dng,
     deblurred in scene light with darktable's default raw workflow; or turned.tif, for the
     varying scenario), DT_E2E_CALLS (the log of dt-deconvolve calls the test's wrapper keeps),
     DT_E2E_SCENARIO (main, varying, or killed then after_kill on one library). ]]

local dt = require "darktable"

local pictures = assert(os.getenv("DT_E2E_PICTURES"))
local calls_log = assert(os.getenv("DT_E2E_CALLS"))
local report = assert(io.open(assert(os.getenv("DT_E2E_REPORT")), "w"))
local RUN_LIMIT = 120 -- seconds for one deconvolution, worker start included

local function note(name, value)
  report:write(name, "\t", tostring(value):gsub("\n", " "), "\n")
  report:flush()
end

note("loaded", true)

local function now()
  local pipe = io.popen("date +%s.%N")
  local seconds = tonumber(pipe:read("l"))
  pipe:close()
  return seconds
end

-- Toasts reach the test through the report (the plug-in calls dt.print through this table).
local toasts = {}
local show_toast = dt.print
dt.print = function(text)
  toasts[#toasts + 1] = text
  note("toast", text)
  show_toast(text)
end

-- Exports are counted the same way: the plug-in asks dt.new_format for each one.
local exports = 0
local new_format = dt.new_format
dt.new_format = function(name)
  exports = exports + 1
  return new_format(name)
end

-- A probe for the first message matching `pattern`: its text, or nil.
local function toast_matching(pattern)
  return function()
    for _, text in ipairs(toasts) do
      if text:match(pattern) then
        return text
      end
    end
  end
end

-- Poll `probe` every 100 ms for up to `limit` seconds; its first true value, or nil.
local function wait_for(limit, probe)
  local deadline = now() + limit
  repeat
    local value = probe()
    if value then
      return value
    end
    dt.control.sleep(100)
  until now() > deadline
  return nil
end

local function find_image(filename)
  for _, image in ipairs(dt.database) do
    if image.filename == filename then
      return image
    end
  end
end

local function tag_names(image)
  local names = {}
  for _, tag in ipairs(dt.tags.get_tags(image)) do
    names[#names + 1] = tag.name
  end
  table.sort(names)
  return table.concat(names, ";")
end

local function read_file(path)
  local file = io.open(path)
  if not file then
    return ""
  end
  local text = file:read("a")
  file:close()
  return text
end

-- A result is complete once it carries the plug-in's settings tag (its last step); a failure
-- toast ends the wait too.
local function finished_result(filename)
  return function()
    local image = find_image(filename)
    return image and tag_names(image):match("dt%-deconvolve|blur ") and image -- the last tag
      or toast_matching("failed")()
  end
end

local function deconvolve(original)
  dt.gui.selection({ original })
  dt.gui.action("lua/deconvolve selected images", 0, "", "", 1.0)
end

-- Deconvolve `original` and wait for its result `filename`; notes PREFIX_seconds. The result,
-- or nil after noting PREFIX_result = missing (timed out, or failed).
local function run_once(prefix, original, filename)
  local start = now()
  deconvolve(original)
  local result = wait_for(RUN_LIMIT, finished_result(filename))
  note(prefix .. "_seconds", now() - start)
  if type(result) ~= "userdata" then
    note(prefix .. "_result", "missing")
    return nil
  end
  return result
end

local function describe(prefix, result, original)
  note(prefix .. "_exports", exports)
  note(prefix .. "_leader_is_original", result.group_leader.id == original.id)
  note(prefix .. "_original_leads", original.group_leader.id == original.id)
  note(prefix .. "_tags", tag_names(result))
  note(prefix .. "_rating", result.rating)
  note(prefix .. "_red", result.red)
  note(prefix .. "_title", result.title)
  note(prefix .. "_description", result.description)
end

-- Export `image` as darktable renders it (its whole history) to `name` in the pictures folder.
local function render(image, name)
  local format = new_format("tiff")
  format.bpp = 32
  format:write_image(image, pictures .. "/" .. name)
end

-- A raw file in scene light: the look comes back on the result, nothing temporary is left.
local function raw_scenario()
  dt.preferences.write("deconvolve", "finished_export", "bool", false)
  toasts = {} -- the failure toasts of the runs before are not this run's
  local styles_before = #dt.styles
  local shaken = dt.database.import(pictures .. "/shaken.dng")
  local result = run_once("raw", shaken, "shaken_deconv.tif")
  if not result then
    return
  end
  note("raw_leader_is_original", result.group_leader.id == shaken.id)
  note("raw_styles_left", #dt.styles - styles_before)
  local style_tags = 0 -- darktable tags what it applies a style to: the temporary ones' go too
  for index = 1, #dt.tags do
    style_tags = style_tags + (dt.tags[index].name:find("^darktable|style|") and 1 or 0)
  end
  note("raw_style_tags", style_tags)
  local copies = 0
  for _, image in ipairs(dt.database) do
    copies = copies + (image.filename == "shaken.dng" and 1 or 0)
  end
  note("raw_copies", copies)
  render(dt.database.import(pictures .. "/sharp.dng"), "render_sharp.tif")
  render(shaken, "render_shaken.tif")
  render(result, "render_result.tif")
  -- A picture never edited has no history: deblurred as darktable renders it.
  run_once("fresh", dt.database.import(pictures .. "/fresh.tif"), "fresh_deconv.tif")
end

local function plugin_started()
  note("started", wait_for(60, function()
    return pcall(function()
      return dt.gui.libs.deconvolve.visible ~= nil
    end)
  end) or false)
end

-- Blur across the frame set to varying (by the test): what the message and the tag say.
local function varying_scenario()
  plugin_started()
  local result = run_once("varying", dt.database.import(pictures .. "/turned.tif"),
    "turned_deconv.tif")
  note("varying_toast", wait_for(5, toast_matching("^blur confidence ")) or "missing")
  if result then
    note("varying_tags", tag_names(result))
  end
end

local function main_scenario()
  plugin_started()
  dt.preferences.write("deconvolve", "finished_export", "bool", true) -- the TIFFs: finished

  local original = dt.database.import(pictures .. "/blurred.tif")
  dt.tags.attach(dt.tags.create("people|alice"), original)
  original.rating = 4
  original.red = true
  original.title = "market"
  original.description = "a shaken shot"

  local first = run_once("first", original, "blurred_deconv.tif")
  if not first then
    return
  end
  describe("first", first, original)

  local second = run_once("second", original, "blurred_deconv_1.tif")
  if not second then
    return
  end
  describe("second", second, original)
  note("group_size", #original:get_group_members())

  -- Cancel once the worker has the job (the wrapper logs each call as it starts).
  local other = dt.database.import(pictures .. "/cancel.tif")
  deconvolve(other)
  note("cancel_submitted", wait_for(RUN_LIMIT, function()
    return read_file(calls_log):match("submit [^\n]*cancel_deconv%.tif")
  end) ~= nil)
  dt.control.sleep(1000)
  dt.gui.action("lua/cancel deconvolution", 0, "", "", 1.0)
  note("cancel_finished", wait_for(60, toast_matching("cancelled")) ~= nil)
  dt.control.sleep(1000) -- anything imported late would show now
  note("cancel_imported", find_image("cancel_deconv.tif") ~= nil)

  -- A picture the worker refuses (smaller than the blur): a message with the reason, no import.
  deconvolve(dt.database.import(pictures .. "/tiny.tif"))
  note("failure_toast",
    wait_for(RUN_LIMIT, toast_matching("^deconvolve failed for tiny%.tif: ")) or "missing")
  dt.control.sleep(500)
  note("failure_imported", find_image("tiny_deconv.tif") ~= nil)

  raw_scenario()
end

-- darktable killed (SIGKILL, as a crash) while it exports a raw's temporary duplicate: the
-- next export writes nothing and kills darktable instead.
local function killed_scenario()
  plugin_started()
  dt.preferences.write("deconvolve", "finished_export", "bool", false)
  dt.new_format = function(name)
    local format = new_format(name)
    return setmetatable({}, {
      __index = function(_, key)
        if key ~= "write_image" then
          return format[key]
        end
        return function(_, image)
          note("killing", image.duplicate_index)
          local stat = assert(io.open("/proc/self/stat"))
          local pid = stat:read("n")
          stat:close()
          os.execute("kill -KILL " .. pid)
          dt.control.sleep(60000)
        end
      end,
      __newindex = function(_, key, value)
        format[key] = value
      end,
    })
  end
  deconvolve(dt.database.import(pictures .. "/shaken.dng"))
  dt.control.sleep(RUN_LIMIT * 1000)
end

-- The start after that kill: what the library still holds.
local function after_kill_scenario()
  plugin_started()
  local copies = 0
  for _, image in ipairs(dt.database) do
    copies = copies + (image.filename == "shaken.dng" and 1 or 0)
  end
  note("copies", copies)
  local style_tags = 0
  for index = 1, #dt.tags do
    style_tags = style_tags + (dt.tags[index].name:find("^darktable|style|") and 1 or 0)
  end
  note("style_tags", style_tags)
end

local scenarios = { main = main_scenario, varying = varying_scenario, killed = killed_scenario,
  after_kill = after_kill_scenario }

dt.control.dispatch(function()
  local ok, err = pcall(assert(scenarios[os.getenv("DT_E2E_SCENARIO")], "DT_E2E_SCENARIO"))
  if not ok then
    note("error", err)
  end
  note("quitting", true)
  dt.gui.action("global/quit", 0, "", "", 1.0)
end)
