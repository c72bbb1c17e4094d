--[[
  The scene-referred round trip in darktable (see scene.lua for the why): darktable 4.2's Lua
  API has no history accessor, but it has styles. So:

  1. `dt.styles.create(image)` copies the image's history into a temporary style, which
     `style:export` writes as a .dtstyle file (its items and the pipe order);
  2. scene.lua splits that file into a scene style (the look switched off, linear Rec. 2020
     output) and a look style, which `dt.styles.import` brings back;
  3. the scene style goes onto a temporary duplicate (`image:duplicate()`, `apply_style`), which
     is exported and deleted again (with the sidecar darktable wrote for it, where that sidecar
     is its own: `remove_duplicate`);
  4. after deblurring, the look style goes onto the imported result (`apply_style`);
  5. the temporary styles are deleted.

  The original's history is never touched. Every darktable call here runs under pcall by the
  caller's choice: a failure is a reason, never a Lua error in darktable.
]]

local files = require "lib/deconvolve/files"
local logic = require "lib/deconvolve/logic"
local scene = require "lib/deconvolve/scene"

-- A message the plug-in translates as it shows it (gettext's "noop": marked for the catalogue).
local function N_(msgid)
  return msgid
end

local roundtrip = {}

-- The description of every temporary style (and so of the split styles, which copy its head).
local DESCRIPTION = "dt-deconvolve"
-- The tag darktable gives a picture it applies a style to.
local STYLE_TAG = "darktable|style|"
-- The end of the scene style's name (the look style's: "-look").
local SCENE_SUFFIX = "-scene"
-- The names of a run's temporary styles begin with its private folder's (`logic.PRIVATE_FOLDER`:
-- `dt-deconvolve-PID-XXXXXXXX-`); a scene style's whole name is
-- `dt-deconvolve-PID-XXXXXXXX-edit-ID-N-scene` (the picture's id and a counter: deconvolve.lua's
-- `process_image`).
local PRIVATE_STYLE = "^" .. logic.PRIVATE_FOLDER:gsub("%p", "%%%0"):gsub("%%%%d", "%%d+")
  :gsub("X+", function(random) return ("%w"):rep(#random) end) .. "%-"
local SCENE_STYLE = PRIVATE_STYLE .. "edit%-%d+%-%d+" .. SCENE_SUFFIX:gsub("%p", "%%%0") .. "$"

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

-- The image's history as the text of a style file, through a temporary style; nil and a reason.
local function history_text(dt, image, folder, name)
  local style = dt.styles.create(image, name, DESCRIPTION)
  if not style then
    return nil, N_("darktable made no style of the image's history")
  end
  local exported, problem = pcall(style.export, style, folder, true)
  style:delete() -- (whatever the export did)
  -- darktable 4.2 keeps a file of every style it creates in its configuration's styles folder,
  -- and deleting the style leaves that file: so it is removed here.
  os.remove(dt.configuration.config_dir .. "/styles/" .. name .. ".dtstyle")
  local path = folder .. "/" .. name .. ".dtstyle"
  local text = files.read(path)
  os.remove(path)
  if not exported then
    return nil, tostring(problem)
  end
  if not text then
    return nil, N_("darktable wrote no style file")
  end
  return text
end

local function never_edited(text)
  return text:find("<darktable_style", 1, true) and not text:find("<style>", 1, true)
end

-- How long a raw that darktable has rendered may take to show its default history, and how
-- often it is looked for meanwhile (milliseconds).
local HISTORY_WAIT, HISTORY_POLL = 5000, 250

--[[ The history text of an image that had none: darktable's default one, which a render gives
     it. A raw always has one once rendered, but when another thread renders it at the same time
     (the lighttable's thumbnail of a raw just imported), the history may come a moment later:
     it is waited for. A raw still without one is refused, never deblurred as darktable renders
     it: that goes through its tone mapper, as a finished picture (a raw's result came back so
     once in about twenty CI runs, engine 0.3.43). ]]
local function default_history(dt, image, folder, name)
  image:generate_cache(true, 0, 0)
  local text, reason = history_text(dt, image, folder, name)
  local function raw_without_history()
    return text and never_edited(text) and image.is_raw
  end
  local waited = 0
  while raw_without_history() and waited < HISTORY_WAIT do
    dt.control.sleep(HISTORY_POLL)
    waited = waited + HISTORY_POLL
    text, reason = history_text(dt, image, folder, name)
  end
  if raw_without_history() then
    return nil,
      N_("darktable has not given this raw its default edit: open it in the darkroom once, then run again")
  end
  return text, reason
end

--[[ The image's edit as a parsed style file (scene.parse). A picture darktable has not rendered
     yet has no history: darktable gives it its default one (for a raw, filmic included) when it
     first renders it, so a thumbnail is made first (without it, a raw deconvolved right after
     its import, before its thumbnail, went through filmic: deblurred as a finished picture).
     `image.is_raw` cannot tell before that: it is false for a DNG until darktable has read the
     file. ]]
local function read_edit(dt, image, folder, name)
  local text, reason = history_text(dt, image, folder, name)
  if text and never_edited(text) then
    text, reason = default_history(dt, image, folder, name)
  end
  if not text then
    return nil, reason
  end
  if never_edited(text) then
    return { items = {} } -- a picture never edited (a JPEG just imported): no history to copy
  end
  return scene.parse(text)
end

--[[ Split `image`'s edit into two temporary styles: { scene = style, look = style (nil when the
     look is empty) }, or {} when the image has no edit history yet (nothing to split: it is
     deblurred as darktable renders it). `name` is unique (a file name stem, no path
     separator); `folder` is the run's private folder (`private_folder` in deconvolve.lua), where
     the style files are written and removed; `read_sidecar()` (optional) gives the picture's
     sidecar when it follows the library's edits (nil else), read once the edit is (a first
     render may write it): when it describes the style's history (`scene.describes`), its
     `history_end` and instances cut the style to what darktable renders, and it is kept as
     `sidecar_text`, the edit the export will hold (nil: the sidecar names no edit); an edit that
     changed while the style was made (the sidecar read before and after) is refused. Returns
     nil and a reason on failure (a message id, its `%s` the third value where it has one);
     `roundtrip.release` removes what was made. ]]
function roundtrip.split_edit(dt, image, folder, name, read_sidecar)
  local before = scene.edit_of(read_sidecar and read_sidecar())
  local edit, reason = read_edit(dt, image, folder, name)
  if not edit then
    return nil, reason
  end
  if #edit.items == 0 then
    return {}
  end
  local sidecar_text = read_sidecar and read_sidecar() or nil
  if before and before ~= scene.edit_of(sidecar_text) then -- (the style may hold either edit)
    return nil, N_("its edit changed as the run began: run it again")
  end
  if sidecar_text and not scene.describes(edit, sidecar_text) then
    sidecar_text = nil -- (its numbers are not the library's: it says nothing of this history)
  end
  local repeated = not sidecar_text and scene.repeated(edit)
  if repeated then -- (applied as it is, an exposure edited twice was two, added up)
    return nil,
      N_("%s has more than one history entry, which darktable's styles cannot carry without a sidecar darktable wrote for this history: compress its history stack (darkroom, history), or let darktable write sidecars (preferences, storage)"),
      repeated
  end
  local parts
  parts, reason = scene.split(edit, scene.history_end(sidecar_text), scene.priorities(sidecar_text))
  if not parts then
    return nil, reason
  end
  local made = {}
  local imported, problem = pcall(function() -- (what was made is released whatever happens)
    local scene_name = name .. SCENE_SUFFIX
    made.scene = import_style(dt, folder, scene_name, scene.style_text(edit, scene_name, parts.scene))
    if #parts.look > 0 then
      made.look = import_style(dt, folder, name .. "-look", scene.style_text(edit, name .. "-look", parts.look))
    end
  end)
  if not imported or not made.scene or (#parts.look > 0 and not made.look) then
    roundtrip.release(dt, made)
    return nil, imported and N_("darktable did not import the split style") or tostring(problem)
  end
  made.sidecar_text = sidecar_text
  return made
end

-- Whether darktable writes a sidecar for each picture (preferences, storage), so that a
-- duplicate's sidecar is its own to remove.
function roundtrip.writes_sidecars(dt)
  return dt.preferences.read("darktable", "write_sidecar_files", "string") ~= "never"
end

--[[ Take the temporary `duplicate` out of the library, with the sidecar darktable wrote for it:
     only where darktable writes sidecars, and where no picture left in its folder names that
     sidecar (darktable 4.2 gives a duplicate made after a picture was imported again the
     version of one already there, and both share one sidecar). ]]
local function remove_duplicate(dt, duplicate)
  local sidecar, film = duplicate.sidecar, duplicate.film
  duplicate:delete() -- leaves the library only; the file is the original's
  if not roundtrip.writes_sidecars(dt) then
    return
  end
  for index = 1, #film do
    if film[index].sidecar == sidecar then
      return
    end
  end
  os.remove(sidecar)
end

--[[ Export `image` as it stands before its tone mapper to `path`, through a temporary duplicate
     that carries the scene style; `export(image, path)` writes the file and says whether it did. ]]
function roundtrip.export_scene(dt, image, made, path, export)
  local duplicate = image:duplicate()
  local ok, written = pcall(function()
    duplicate:apply_style(made.scene)
    return export(duplicate, path)
  end)
  remove_duplicate(dt, duplicate)
  return ok and written
end

-- Give the imported `result` the original's look.
function roundtrip.apply_look(result, made)
  if made.look then
    result:apply_style(made.look)
  end
end

-- Delete a tag, if there is one called `name` (detached from every picture).
local function delete_tag(dt, name)
  local tag = dt.tags.find(name)
  if tag then
    dt.tags.delete(tag)
  end
end

-- Delete the temporary styles, and the tags darktable gave the pictures they were applied to
-- (they named styles that no longer exist, two more in the library at every run).
function roundtrip.release(dt, made)
  for _, key in ipairs({ "scene", "look" }) do
    if made[key] then
      local name = made[key].name
      pcall(made[key].delete, made[key])
      pcall(delete_tag, dt, STYLE_TAG .. name)
      made[key] = nil
    end
  end
end

--[[ Remove the temporary duplicate that the scene style `tag` names, left by an export that
     never ended (darktable killed as it exported). A run applies each scene style to one
     duplicate; where more pictures carry its tag, darktable copied the tag onto a copy made by
     hand since, and none is removed. A version 0 is never removed. ]]
local function remove_leftover_duplicate(dt, tag)
  local duplicates = {}
  for index = 1, #tag do
    local image = tag[index]
    if image.duplicate_index > 0 then
      duplicates[#duplicates + 1] = image
    end
  end
  if #duplicates == 1 then
    remove_duplicate(dt, duplicates[1])
  end
end

--[[ Delete the temporary styles, and their tags, that a run which never ended left behind
     (darktable killed or crashed while it deblurred): a leftover style bearing the name a new
     one was given hung darktable 4.2 in `dt.styles.create` at the next session's run. A tag is
     deleted where it names a style of ours (our description; a run's name, or one deleted here:
     engine 0.3.19's plug-in named them `edit-ID-N-scene`), never a user's style of a like name.
     The duplicate an export was made from goes too, found by the tag of a scene style of ours
     left in the library. ]]
function roundtrip.remove_leftovers(dt)
  -- tags of the styles deleted, of the scene styles among them, and of the user's styles
  local ours, scenes, theirs = {}, {}, {}
  for index = #dt.styles, 1, -1 do
    local style = dt.styles[index]
    local tag = STYLE_TAG .. style.name
    if style.description == DESCRIPTION then
      ours[tag], scenes[tag] = true, style.name:find(SCENE_STYLE) ~= nil
      pcall(style.delete, style)
    else
      theirs[tag] = true
    end
  end
  for index = #dt.tags, 1, -1 do
    local tag = dt.tags[index]
    local name = tag.name
    local runs = name:sub(1, #STYLE_TAG) == STYLE_TAG and name:find(PRIVATE_STYLE, #STYLE_TAG + 1)
    if ours[name] or (runs and not theirs[name]) then
      if scenes[name] then
        pcall(remove_leftover_duplicate, dt, tag)
      end
      pcall(dt.tags.delete, tag)
    end
  end
end

return roundtrip
