--[[ Drive the plug-in (under the stub darktable) with a real `dt-deconvolve`:
       lua5.4 drive_plugin.lua JOBFILE REPORTFILE
     JOBFILE holds NUL-terminated fields: darktable's temporary folder, the command, then the
     pictures to select (any bytes but NUL, so hostile names travel intact). The "export" copies
     the picture's own bytes (a real TIFF). REPORTFILE gets NUL-terminated pairs: "import" and
     the imported path, "toast" and each message. The run ends with darktable's exit event. ]]
local stub = require "stub_darktable"

local function read(path)
  local file = assert(io.open(path, "rb"))
  local text = file:read("a")
  file:close()
  return text
end

local fields = {}
for field in read(arg[1]):gmatch("([^%z]*)%z") do
  fields[#fields + 1] = field
end
-- The finished-picture export: the stub has no styles for the scene-referred round trip.
local rec = stub.new({ tmp_dir = fields[1],
  conf = { ["deconvolve/command"] = fields[2], ["deconvolve/blur_mode"] = "slider",
    ["deconvolve/blur_size"] = 5,
    ["deconvolve/finished_export"] = true } })
rec.dt.new_format = function()
  return {
    write_image = function(_, image, path)
      local file = assert(io.open(path, "wb"))
      file:write(read(image.path .. "/" .. image.filename))
      file:close()
      return false
    end,
  }
end
rec.data = stub.load_plugin()
rec.run_dispatched()
local images = {}
for index = 3, #fields do
  images[#images + 1] = stub.image(rec, fields[index])
end
rec.dt.gui.selection = function()
  return images
end
rec.events["deconvolve/shortcut"].fn("shortcut", "deconvolve selected images")
rec.run_dispatched()
rec.events["deconvolve/exit"].fn("exit")
local report = assert(io.open(arg[2], "wb"))
for _, image in ipairs(rec.imported) do
  report:write("import\0", image.path, "/", image.filename, "\0")
end
for _, text in ipairs(rec.toasts) do
  report:write("toast\0", text, "\0")
end
report:close()
