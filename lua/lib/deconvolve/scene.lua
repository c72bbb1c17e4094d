--[[
  The pure part of the scene-referred round trip: splitting a picture's edit, as darktable's
  style file (.dtstyle) of its history holds it, into the part that goes before deblurring and
  the photographer's look that goes after it.

  Deblurring works best in the scene's linear light, where the blur happened. So the picture is
  exported as it stands before its tone mapper (filmic, sigmoid, base curve...): everything
  earlier in darktable's pipe (raw preparation, demosaicing, denoising, lens correction,
  exposure, colour calibration...) stays on, the tone mapper and every module after it in pipe
  order are switched off, and the output profile is linear Rec. 2020 (darktable's own working
  space). The deblurred picture comes back as a linear TIFF, and the look (the tone mapper and
  the modules after it, with the photographer's settings) is applied to it as a style, so that
  it looks like the original, only sharper.

  Nothing here touches darktable or the disk: plain `lua5.4` tests it (tests/lua/).
]]

local scene = {}

-- A message the plug-in translates as it shows it (gettext's "noop": marked for the catalogue).
local function N_(msgid)
  return msgid
end

-- Tone mappers: the modules that take scene-referred light to the display's range.
scene.TONE_MAPPERS = {
  basecurve = true,
  filmic = true,
  filmicrgb = true,
  sigmoid = true,
  tonemap = true,
}

-- Modules of every pipe that never move into the look: the imported picture has its own. The
-- input profile stays on in the scene style: in the old pipe order of a display-referred edit
-- (base curve) it comes after the tone mapper, and switched off there it left the export in
-- the camera's colours (a helper's attack, engine 0.3.54).
scene.PIPE_MODULES = {
  colorin = true,
  colorout = true,
  gamma = true,
  finalscale = true,
  overexposed = true,
  rawoverexposed = true,
}

--[[ colorout's parameters (version 5: profile type, file name[512], intent) for linear Rec.
     2020, DT_COLORSPACE_LIN_REC2020 = 4 in darktable's colorspaces.h, perceptual intent. ]]
scene.LINEAR_OUTPUT = "04000000" .. string.rep("00", 516)

local function instance_key(operation, priority)
  return operation .. "," .. tostring(priority)
end

--[[ A .dtstyle file's content: `head` (the text before <style>), `order` (the pipe position of
     each module instance, "operation,priority" -> index, from <iop_list>) and `items` (one per
     history entry, sorted by `num`: num, operation, priority, enabled, text). nil and a reason
     when the text is no style darktable wrote. ]]
function scene.parse(text)
  local head = text:match("^(.-)<style>")
  local body = text:match("<style>(.*)</style>")
  if not head or not body then
    return nil, N_("not a darktable style")
  end
  local order, position = {}, 0
  for operation, priority in (text:match("<iop_list>(.-)</iop_list>") or ""):gmatch("([^,]+),(%-?%d+)") do
    position = position + 1
    order[instance_key(operation, tonumber(priority))] = position
  end
  local items = {}
  for plugin in body:gmatch("<plugin>.-</plugin>") do
    local item = {
      num = tonumber(plugin:match("<num>(%-?%d+)</num>")),
      operation = plugin:match("<operation>(.-)</operation>"),
      priority = tonumber(plugin:match("<multi_priority>(%-?%d+)</multi_priority>")) or 0,
      enabled = plugin:match("<enabled>(%d)</enabled>") == "1",
      text = plugin,
    }
    if not item.num or not item.operation then
      return nil, N_("a style item without number or module")
    end
    items[#items + 1] = item
  end
  table.sort(items, function(a, b)
    return a.num < b.num
  end)
  return { head = head, order = order, items = items }
end

-- Each module instance's pipe position (nil when the order does not list it) and whether its
-- last history entry leaves it on.
local function instances(style)
  local found = {}
  for _, item in ipairs(style.items) do
    local key = instance_key(item.operation, item.priority)
    found[key] = found[key] or {
      operation = item.operation,
      position = style.order[key] or style.order[instance_key(item.operation, 0)],
    }
    found[key].enabled = item.enabled
  end
  return found
end

--[[ Where the look begins in the pipe: the first tone mapper that is on; without one, right
     after the last place a tone mapper could take (darktable orders every display-referred
     module after them). nil when the style lists no order. ]]
function scene.boundary(style)
  local first, after_slots
  for key, position in pairs(style.order) do
    local operation = key:match("^(.-),")
    if scene.TONE_MAPPERS[operation] then
      after_slots = math.max(after_slots or 0, position + 1)
    end
  end
  for _, instance in pairs(instances(style)) do
    if instance.enabled and instance.position and scene.TONE_MAPPERS[instance.operation] then
      first = math.min(first or instance.position, instance.position)
    end
  end
  return first or after_slots
end

-- Whether `item` belongs to the look: at or after the boundary, and not one of the pipe's own.
local function in_look(style, boundary, item)
  local position = style.order[instance_key(item.operation, item.priority)]
    or style.order[instance_key(item.operation, 0)]
  return position ~= nil and position >= boundary and not scene.PIPE_MODULES[item.operation]
end

local function with_enabled(text, enabled)
  return (text:gsub("<enabled>%d</enabled>", "<enabled>" .. (enabled and "1" or "0") .. "</enabled>"))
end

local function with_params(text, params)
  return (text:gsub("<op_params>.-</op_params>", "<op_params>" .. params .. "</op_params>"))
end

--[[ Where a sidecar's history ends (`darktable:history_end`): the entries numbered from there
     on were undone in the darkroom (its history's "compress" or a click lower in the list), and
     darktable renders without them; nil when the text says nothing of it. ]]
function scene.history_end(sidecar_text)
  return tonumber((sidecar_text or ""):match('darktable:history_end="(%d+)"'))
end

-- The history block of a sidecar's text (its entries), or nil.
local function history_of(sidecar_text)
  return (sidecar_text or ""):match("<darktable:history>(.-)</darktable:history>")
end

--[[ A sidecar's edit: its history entries and where the history ends, as one text; nil when it
     holds no history entry (a picture not yet rendered). ]]
function scene.edit_of(sidecar_text)
  local history = history_of(sidecar_text)
  if not history or not history:find("<rdf:li", 1, true) then
    return nil
  end
  return history .. "|" .. tostring(scene.history_end(sidecar_text))
end

-- The history entries of a sidecar's text, one after another: the attributes of each, as text.
local function entries_of(sidecar_text)
  return (history_of(sidecar_text) or ""):gmatch("<rdf:li(.-)/>")
end

-- An entry's history number, and the text of its attribute `name` (nil where it has none).
local function entry_field(entry, name)
  return tonumber(entry:match('darktable:num="(%d+)"')), entry:match("darktable:" .. name .. '="([^"]*)"')
end

--[[ The module instance of each history entry as a sidecar holds it: history number -> its
     multi_priority; nil when the text holds no history. A style of the history does not keep
     them: darktable gives each entry of an operation a priority of its own, so one instance
     edited twice came back as two (two exposures added up, two filmics in a row). ]]
function scene.priorities(sidecar_text)
  local found
  for entry in entries_of(sidecar_text) do
    local num, text = entry_field(entry, "multi_priority")
    local priority = tonumber(text)
    if num and priority then
      found = found or {}
      found[num] = priority
    end
  end
  return found
end

--[[ Whether a sidecar's history numbers the style's entries as the library does: the same
     numbers for the same modules, no more and no fewer. One darktable has not rewritten since
     the picture came in (copied in with it, written by another version or by hand) may not:
     the library adds the modules every picture has (input and output profiles...) before its
     entries, and its numbers would cut the wrong ones (a helper's check in darktable, engine
     0.3.55: a crop and the scene's output profile were dropped from the export). ]]
function scene.describes(style, sidecar_text)
  local operations, count = {}, 0
  for entry in entries_of(sidecar_text) do
    local num, operation = entry_field(entry, "operation")
    if not num or not operation then
      return false
    end
    operations[num], count = operation, count + 1
  end
  if count ~= #style.items then
    return false
  end
  for _, item in ipairs(style.items) do
    if operations[item.num] ~= item.operation then
      return false
    end
  end
  return true
end

--[[ An operation with more than one entry in the style, or nil: without the sidecar's
     instances (`scene.priorities`) one instance edited twice cannot be told from two. ]]
function scene.repeated(style)
  local seen = {}
  for _, item in ipairs(style.items) do
    if seen[item.operation] then
      return item.operation
    end
    seen[item.operation] = true
  end
  return nil
end

-- The entries darktable renders: those before `history_end` (`scene.history_end`; 0 is a
-- sidecar written before the first render), and of each instance (`priorities`) its last,
-- given the instance's own priority.
local function rendered(items, history_end, priorities)
  local done = {}
  for _, item in ipairs(items) do
    if not history_end or history_end == 0 or item.num < history_end then
      local priority = priorities and priorities[item.num]
      if priority then
        item = { num = item.num, operation = item.operation, priority = priority,
          enabled = item.enabled, text = (item.text:gsub("<multi_priority>%-?%d+</multi_priority>",
            "<multi_priority>" .. priority .. "</multi_priority>", 1)) }
      end
      done[#done + 1] = item
    end
  end
  local last, kept = {}, {}
  for index, item in ipairs(done) do
    last[instance_key(item.operation, item.priority)] = index
  end
  for index, item in ipairs(done) do
    if not (priorities and priorities[item.num]) or last[instance_key(item.operation, item.priority)] == index then
      kept[#kept + 1] = item
    end
  end
  return kept
end

--[[ Split a parsed style into the plugin texts of two styles: `scene` (the history, with the
     look's modules switched off and the output profile linear Rec. 2020) and `look` (the look's
     history entries, in their order). A style of the history holds the undone entries too, and
     one instance per entry: given the sidecar's `history_end` and `priorities`, the history is
     first cut to what darktable renders (`rendered`; a helper's attack, engine 0.3.54: an undone
     +2 EV came back, an exposure edited twice was applied twice). nil and a reason when the
     style lists no pipe order to split by. ]]
function scene.split(style, history_end, priorities)
  style = { head = style.head, order = style.order, items = rendered(style.items, history_end, priorities) }
  local boundary = scene.boundary(style)
  if not boundary then
    return nil, N_("the style lists no pipe order")
  end
  local before, look = {}, {}
  for _, item in ipairs(style.items) do
    local text = item.text
    if in_look(style, boundary, item) then
      look[#look + 1] = text
      text = with_enabled(text, false)
    elseif item.operation == "colorout" then
      text = with_params(text, scene.LINEAR_OUTPUT)
    end
    before[#before + 1] = text
  end
  return { scene = before, look = look }
end

local function xml_escape(text)
  return (text:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

--- A .dtstyle file named `name` holding `plugins` (texts from `split`), with `style`'s order.
function scene.style_text(style, name, plugins)
  local head = style.head:gsub("<name>.-</name>", function()
    return "<name>" .. xml_escape(name) .. "</name>"
  end, 1)
  return head .. "<style>" .. table.concat(plugins) .. "</style></darktable_style>"
end

return scene
