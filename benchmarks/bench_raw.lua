--[[ Runs inside darktable for benchmarks/bench_raw.py, through the plug-in's own round trip
     (lua/lib/deconvolve/roundtrip.lua). Environment: BENCH_ROOT (the checkout), BENCH_CASES (a
     file listing one case folder per line), BENCH_MODE:
       render: for sharp.dng, shaken.dng and clean.dng (shaken without noise), darktable's
               render with its default raw workflow (render_*.tif) and the scene-referred export
               (scene_*.tif); the look of shaken.dng as look.dtstyle;
       look:   scene_deblurred.tif, scene_shaken.tif (as roundtrip.tif) and the blurred scenes
               (scene_reblurred, scene_sharpblurred, scene_coarse_shaken, scene_coarse_deblurred)
               imported with that look and rendered (render_deblurred.tif, render_roundtrip.tif,
               render_reblurred.tif, ...).
     Writes "done" or the error into BENCH_CASES .. ".status", then quits. ]]

local dt = require "darktable"
package.path = os.getenv("BENCH_ROOT") .. "/lua/?.lua;" .. package.path
local roundtrip = require "lib/deconvolve/roundtrip"

local cases_file = assert(os.getenv("BENCH_CASES"))
local mode = assert(os.getenv("BENCH_MODE"))

local function render(image, path)
  local format = dt.new_format("tiff")
  format.bpp = 32
  format:write_image(image, path)
end

local function export(image, path)
  render(image, path)
  return io.open(path) ~= nil
end

local function copy(from, to)
  assert(os.execute(string.format("cp '%s' '%s'", from, to)))
end

local function render_case(folder, index)
  for _, name in ipairs({ "sharp", "shaken", "clean" }) do
    local image = dt.database.import(folder .. "/" .. name .. ".dng")
    render(image, folder .. "/render_" .. name .. ".tif")
    local made = assert(roundtrip.split_edit(dt, image, folder, "bench-" .. index .. "-" .. name))
    assert(roundtrip.export_scene(image, made, folder .. "/scene_" .. name .. ".tif", export))
    if name == "shaken" and made.look then
      made.look:export(folder, true)
      os.rename(folder .. "/bench-" .. index .. "-shaken-look.dtstyle", folder .. "/look.dtstyle")
    end
    roundtrip.release(dt, made)
  end
end

local function look_case(folder, index)
  local name = "bench-" .. index .. "-shaken-look"
  local text = io.open(folder .. "/look.dtstyle"):read("a"):gsub("<name>.-</name>", "<name>" .. name .. "</name>", 1)
  local file = io.open(folder .. "/" .. name .. ".dtstyle", "w")
  file:write(text)
  file:close()
  dt.styles.import(folder .. "/" .. name .. ".dtstyle")
  local look
  for i = 1, #dt.styles do
    if dt.styles[i].name == name then
      look = dt.styles[i]
    end
  end
  copy(folder .. "/scene_shaken.tif", folder .. "/roundtrip.tif")
  local looks = {
    scene_deblurred = "render_deblurred",
    roundtrip = "render_roundtrip",
    scene_reblurred = "render_reblurred",
    scene_sharpblurred = "render_sharpblurred",
    scene_coarse_shaken = "render_coarse_shaken",
    scene_coarse_deblurred = "render_coarse_deblurred",
  }
  for source, target in pairs(looks) do
    local image = dt.database.import(folder .. "/" .. source .. ".tif")
    roundtrip.apply_look(image, { look = look })
    render(image, folder .. "/" .. target .. ".tif")
  end
  look:delete()
end

dt.control.dispatch(function()
  local ok, err = pcall(function()
    local index = 0
    for folder in io.lines(cases_file) do
      index = index + 1
      if mode == "render" then
        render_case(folder, index)
      else
        look_case(folder, index)
      end
    end
  end)
  local status = io.open(cases_file .. ".status", "w")
  status:write(ok and "done" or tostring(err))
  status:close()
  dt.gui.action("global/quit", 0, "", "", 1.0)
end)
