--[[
  The scene-referred round trip in darktable (see scene.lua for the why): darktable 4.2's Lua
  API has no history accessor, but it has styles. So:

  1. `dt.styles.create(image)` copies the image's history into a temporary style, which
     `style:export` writes as a .dtstyle file (its items and the pipe order);
  2. scene.lua splits that file into a scene style (the look switched off, linear Rec. 2020
     output) and a look style, which `dt.styles.import` brings back;
  3. the scene style goes onto a temporary duplicate (`image:duplicate()`, `apply_style`), which
     is exported and deleted again (with the sidecar darktable wrote for it);
  4. after deblurring, the look style goes onto the imported result (`apply_style`);
  5. the temporary styles are deleted.

  The original's history is never touched. Every darktable call here runs under pcall by the
  caller's choice: a failure is a reason, never a Lua error in darktable.
]]

local files = require "lib/deconvolve/files"
local scene = require "lib/deconvolve/scene"

local roundtrip = {}

-- The style called `name`, or nil.
local function find_style(dt, name)
  for index = 1, #dt.styles do
    local style = dt.styles[index]
    if style.name == name then
      return style
    end
  end
end

-- Write `text` as a style file named `name` in `folder`, import it, and return the style.
local function import_style(dt, folder, name, text)
  local path = folder .. "/" .. name .. ".dtstyle"
  if not files.write(path, text) then
    return nil
  end
  dt.styles.import(path)
  os.remove(path)
  return find_style(dt, name)
end

-- The image's edit as a parsed style file (scene.parse), through a temporary style.
local function read_edit(dt, image, folder, name)
  local style = dt.styles.create(image, name, "dt-deconvolve")
  if not style then
    return nil, "darktable made no style of the image's history"
  end
  style:export(folder, true)
  style:delete()
  local path = folder .. "/" .. name .. ".dtstyle"
  local text = files.read(path)
  os.remove(path)
  if not text then
    return nil, "darktable wrote no style file"
  end
  if text:find("<darktable_style", 1, true) and not text:find("<style>", 1, true) then
    return { items = {} } -- a picture never edited (a JPEG just imported): no history to copy
  end
  return scene.parse(text)
end

--[[ Split `image`'s edit into two temporary styles: { scene = style, look = style (nil when the
     look is empty) }, or {} when the image has no edit history yet (nothing to split: it is
     deblurred as darktable renders it). `name` is unique (a file name stem, no path
     separator); `folder` is darktable's temporary folder. Returns nil and a reason on failure;
     `roundtrip.release` removes what was made. ]]
function roundtrip.split_edit(dt, image, folder, name)
  local edit, reason = read_edit(dt, image, folder, name)
  if not edit then
    return nil, reason
  end
  if #edit.items == 0 then
    return {}
  end
  local parts
  parts, reason = scene.split(edit)
  if not parts then
    return nil, reason
  end
  local made = {}
  made.scene = import_style(dt, folder, name .. "-scene", scene.style_text(edit, name .. "-scene", parts.scene))
  if #parts.look > 0 then
    made.look = import_style(dt, folder, name .. "-look", scene.style_text(edit, name .. "-look", parts.look))
  end
  if not made.scene or (#parts.look > 0 and not made.look) then
    roundtrip.release(made)
    return nil, "darktable did not import the split style"
  end
  return made
end

--[[ Export `image` as it stands before its tone mapper to `path`, through a temporary duplicate
     that carries the scene style; `export(image, path)` writes the file and says whether it did. ]]
function roundtrip.export_scene(image, made, path, export)
  local duplicate = image:duplicate()
  local ok, written = pcall(function()
    duplicate:apply_style(made.scene)
    return export(duplicate, path)
  end)
  local sidecar, index = duplicate.sidecar, duplicate.duplicate_index
  duplicate:delete() -- leaves the library only; the file is the original's
  if index ~= image.duplicate_index and sidecar ~= image.sidecar then
    os.remove(sidecar) -- the sidecar darktable wrote for the duplicate
  end
  return ok and written
end

-- Give the imported `result` the original's look.
function roundtrip.apply_look(result, made)
  if made.look then
    result:apply_style(made.look)
  end
end

-- Delete the temporary styles.
function roundtrip.release(made)
  for _, key in ipairs({ "scene", "look" }) do
    if made[key] then
      pcall(made[key].delete, made[key])
      made[key] = nil
    end
  end
end

return roundtrip
