--[[ Reading a picture's edit for the scene-referred round trip (lua/lib/deconvolve/roundtrip.lua),
     with plain lua5.4 and a stand-in for darktable's styles. When a render writes a raw's default
     history is the stand-in's to say: a real darktable writes it late only by chance (two renders
     of a raw just imported at once), so the wait and the refusal are tested here; the round trip
     itself runs in a real darktable (test_darktable.py). ]]
local check = require "harness"
local roundtrip = require "lib/deconvolve/roundtrip"
local styles = require "styles"
local test, eq, truthy = check.test, check.eq, check.truthy

-- What darktable writes for a style made of a picture without history: no <style> element.
local NO_HISTORY = '<?xml version="1.0" encoding="UTF-8"?>\n<darktable_style version="1.0">'
  .. "<info><name>dt-deconvolve-1</name><description></description></info></darktable_style>"

--[[ A darktable and a picture (`is_raw`) whose history is none until `delay` ms after its first
     render, then the style file `history` (nil: none ever); the folder its style files go
     through; and a function that says how many ms the plug-in slept. ]]
local function stand_in(is_raw, history, delay)
  local folder = os.tmpname()
  os.remove(folder)
  assert(os.execute("mkdir " .. folder))
  local slept, rendered = 0, nil
  local dt = { configuration = { config_dir = folder }, control = {}, styles = {} }
  function dt.control.sleep(ms)
    slept = slept + ms
  end
  local image = { is_raw = is_raw }
  function image.generate_cache()
    rendered = rendered or slept
  end
  function dt.styles.create(_, name)
    local text = (rendered and history and slept - rendered >= delay) and history or NO_HISTORY
    return {
      export = function(_, where)
        local file = assert(io.open(where .. "/" .. name .. ".dtstyle", "w"))
        file:write(text)
        file:close()
      end,
      delete = function() end,
    }
  end
  function dt.styles.import(path)
    dt.styles[#dt.styles + 1] = { name = path:match("([^/]+)%.dtstyle$") }
  end
  return dt, image, folder, function()
    return slept
  end
end

test("a raw whose default history comes after its render: waited for, then split", function()
  local dt, image, folder, slept = stand_in(true, styles.style_file(styles.DEFAULT_RAW), 1000)
  local made = assert(roundtrip.split_edit(dt, image, folder, "edit-1"))
  truthy(made.scene and made.look, "a scene and a look style")
  eq(made.look.name, "edit-1-look")
  eq(slept(), 1000, "ms waited")
  os.execute("rm -r " .. folder)
end)

test("a raw still without a history after its render: refused, never taken as finished", function()
  local dt, image, folder, slept = stand_in(true, nil, 0)
  local made, reason = roundtrip.split_edit(dt, image, folder, "edit-2")
  eq(made, nil)
  truthy(reason:find("open it in the darkroom", 1, true), "the reason says what to do: " .. reason)
  eq(slept(), 5000, "ms waited")
  os.execute("rm -r " .. folder)
end)

test("without a sidecar, a module with two entries is refused: it would be applied twice", function()
  local twice = { styles.plugin(0, "exposure", true, 1), styles.plugin(1, "filmicrgb", true),
    styles.plugin(2, "exposure", true, 0) }
  local dt, image, folder = stand_in(false, styles.style_file(twice), 0)
  image.generate_cache()
  local made, reason, detail = roundtrip.split_edit(dt, image, folder, "edit-4")
  eq(made, nil)
  truthy(reason:format(detail):find("exposure has more than one history entry", 1, true), reason)
  local sidecar = '<darktable:history>'
    .. '<rdf:li darktable:num="0" darktable:operation="exposure" darktable:multi_priority="0"/>'
    .. '<rdf:li darktable:num="1" darktable:operation="filmicrgb" darktable:multi_priority="0"/>'
    .. '<rdf:li darktable:num="2" darktable:operation="exposure" darktable:multi_priority="0"/>'
    .. '</darktable:history>'
  truthy(roundtrip.split_edit(dt, image, folder, "edit-5", function() return sidecar end).scene,
    "with the sidecar, split")
  -- A sidecar darktable did not write for this history (copied in, by hand, another version)
  -- numbers other entries: it describes nothing, and the refusal stands.
  local foreign = '<darktable:history>'
    .. '<rdf:li darktable:num="0" darktable:operation="exposure" darktable:multi_priority="0"/>'
    .. '</darktable:history>'
  eq(roundtrip.split_edit(dt, image, folder, "edit-6", function() return foreign end), nil)
  os.execute("rm -r " .. folder)
end)

test("an edit that changes while its style is made is refused: the style may hold either", function()
  local dt, image, folder = stand_in(false, styles.style_file(styles.DEFAULT_RAW), 0)
  image.generate_cache()
  local reads = 0
  local function changing()
    reads = reads + 1
    return '<darktable:history><rdf:li darktable:num="0"/></darktable:history>'
      .. string.format('darktable:history_end="%d"', reads)
  end
  local made, reason = roundtrip.split_edit(dt, image, folder, "edit-6", changing)
  eq(made, nil)
  eq(reason, "its edit changed as the run began: run it again")
  local first = "<darktable:history><rdf:Seq/></darktable:history>" -- (not rendered yet: no edit)
  local texts = { first, '<darktable:history><rdf:li darktable:num="0"/></darktable:history>' }
  reads = 0
  truthy(roundtrip.split_edit(dt, image, folder, "edit-7", function()
    reads = reads + 1
    return texts[reads]
  end).scene, "a first render writing the history is no change")
  os.execute("rm -r " .. folder)
end)

test("a picture never edited that is not a raw: as darktable renders it, at once", function()
  local dt, image, folder, slept = stand_in(false, nil, 0)
  eq(roundtrip.split_edit(dt, image, folder, "edit-3"), {})
  eq(slept(), 0, "ms waited")
  os.execute("rm -r " .. folder)
end)

test("a look style darktable fails to import: the scene style made already is released", function()
  -- (an error there lost the scene style: it stayed in darktable until the next session)
  local dt, image, folder = stand_in(true, styles.style_file(styles.DEFAULT_RAW), 0)
  local deleted = {}
  local import = dt.styles.import
  function dt.styles.import(path)
    if path:match("%-look%.dtstyle$") then
      error("no look today", 0)
    end
    import(path)
    dt.styles[#dt.styles].delete = function(style)
      deleted[#deleted + 1] = style.name
    end
  end
  dt.tags = { find = function() end }
  local made, reason = roundtrip.split_edit(dt, image, folder, "edit-7")
  eq({ made, reason }, { nil, "no look today" })
  eq(deleted, { "edit-7-scene" }, "the scene style released")
  os.execute("rm -r " .. folder)
end)

-- A library for `remove_leftovers`: `styles` ({name, description}), `tags` ({name, pictures...})
-- and the preference "write_sidecar_files" (`sidecars`); returns it and the lists of what it
-- deleted: pictures, by sidecar name, and tags.
local function library(styles, tags, sidecars)
  local deleted, gone = {}, {}
  local dt = { styles = {}, tags = tags, preferences = {} }
  for _, style in ipairs(styles) do
    dt.styles[#dt.styles + 1] = { name = style[1], description = style[2], delete = function() end }
  end
  function dt.tags.delete(tag)
    gone[#gone + 1] = tag.name
  end
  function dt.preferences.read(module, name)
    assert(module == "darktable" and name == "write_sidecar_files")
    return sidecars or "on import"
  end
  return dt, deleted, gone
end

-- A picture called `name` of one folder (`film`, shared), version `index`, whose sidecar
-- `sidecar` (`name` unless given) is a file beside `folder`; deleting it takes it out of `film`
-- and names it in `deleted`.
local function picture(film, deleted, folder, name, index, sidecar)
  local path = folder .. "-" .. (sidecar or name)
  assert(io.open(path, "w")):close()
  local image = { duplicate_index = index, sidecar = path, name = name, film = film }
  function image.delete(self)
    deleted[#deleted + 1] = self.name
    for position, other in ipairs(film) do
      if other == self then
        table.remove(film, position)
      end
    end
  end
  film[#film + 1] = image
  return image
end

-- The pictures among `images` whose sidecar is still on disk (and removes every one).
local function sidecars_left(images)
  local left = {}
  for _, image in ipairs(images) do
    local handle = io.open(image.sidecar)
    if handle then
      handle:close()
      os.remove(image.sidecar)
      left[#left + 1] = image.name
    end
  end
  return left
end

local OURS = "dt-deconvolve-4321-Ab3dEf9h-edit-5-2-"

test("a killed export's leftovers: its styles, their tags and the duplicate it came from", function()
  -- Until engine 0.3.59 darktable killed during an export left the temporary duplicate in the
  -- library, with its sidecar (a helper, in a real darktable); the next start removed only the
  -- styles and their tags. And a user's style named like ours is not ours: the first version of
  -- this fix took such a style's duplicates away too (a helper).
  local folder, film = os.tmpname(), {}
  local theirs = "dt-deconvolve-2-strong-edit-1-1-scene" -- (a run's name, all but its random part)
  local dt, deleted, gone = library(
    { { OURS .. "scene", "dt-deconvolve" }, { OURS .. "look", "dt-deconvolve" },
      { "edit-1-2-scene", "mine" }, { theirs, "mine" } },
    {})
  local original = picture(film, deleted, folder, "a.tif.xmp", 0)
  local leftover = picture(film, deleted, folder, "a_01.tif.xmp", 1)
  local result = picture(film, deleted, folder, "a_deconv.tif.xmp", 0)
  local named_like_ours = picture(film, deleted, folder, "a_02.tif.xmp", 2)
  local named_like_a_run = picture(film, deleted, folder, "a_03.tif.xmp", 3)
  local style = "darktable|style|"
  local tags = {
    { name = style .. OURS .. "scene", leftover, original }, -- (no version 0 gets it; kept if so)
    { name = style .. OURS .. "look", result },
    { name = style .. "edit-1-2-scene", named_like_ours },
    { name = style .. theirs, named_like_a_run },
    { name = "people|alice", leftover, named_like_ours },
  }
  for index, tag in ipairs(tags) do
    dt.tags[index] = tag
  end
  roundtrip.remove_leftovers(dt)
  eq(deleted, { "a_01.tif.xmp" }, "only the temporary duplicate leaves the library")
  eq(gone, { style .. OURS .. "look", style .. OURS .. "scene" }, "only our styles' tags")
  eq(sidecars_left({ original, leftover, result, named_like_ours, named_like_a_run }),
    { "a.tif.xmp", "a_deconv.tif.xmp", "a_02.tif.xmp", "a_03.tif.xmp" })
end)

test("a leftover copied by hand, a shared sidecar, no sidecars: nothing of the user's goes", function()
  -- (a helper, in a real darktable: darktable copies a duplicate's tags onto a copy of it; after
  -- a picture is imported again, darktable 4.2 gives the next duplicate the version of one
  -- already there, and both name one sidecar)
  local style = "darktable|style|" .. OURS .. "scene"
  local folder, film = os.tmpname(), {}
  local dt, deleted = library({ { OURS .. "scene", "dt-deconvolve" } }, {})
  local leftover = picture(film, deleted, folder, "a_01.tif.xmp", 1)
  local copy = picture(film, deleted, folder, "a_02.tif.xmp", 2)
  dt.tags[1] = { name = style, leftover, copy }
  roundtrip.remove_leftovers(dt)
  eq(deleted, {}, "two pictures carry the tag: neither is taken for the leftover")
  eq(sidecars_left({ leftover, copy }), { "a_01.tif.xmp", "a_02.tif.xmp" })

  film = {}
  dt, deleted = library({ { OURS .. "scene", "dt-deconvolve" } }, {})
  local users = picture(film, deleted, folder, "the user's version 1", 1, "a_01.tif.xmp")
  leftover = picture(film, deleted, folder, "the leftover", 1, "a_01.tif.xmp")
  dt.tags[1] = { name = style, leftover }
  roundtrip.remove_leftovers(dt)
  eq(deleted, { "the leftover" }, "the leftover leaves the library")
  eq(sidecars_left({ users }), { "the user's version 1" }, "the sidecar another picture names stays")

  film = {}
  dt, deleted = library({ { OURS .. "scene", "dt-deconvolve" } }, {}, "never")
  leftover = picture(film, deleted, folder, "a_01.tif.xmp", 1) -- (a file of the user's)
  dt.tags[1] = { name = style, leftover }
  roundtrip.remove_leftovers(dt)
  eq(deleted, { "a_01.tif.xmp" })
  eq(sidecars_left({ leftover }), { "a_01.tif.xmp" }, "darktable writes no sidecar: none is ours")
end)

check.run()
