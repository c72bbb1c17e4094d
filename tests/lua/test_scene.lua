-- Splitting an edit at its tone mapper (lua/lib/deconvolve/scene.lua), with plain lua5.4.
local check = require "harness"
local scene = require "lib/deconvolve/scene"
local test, eq = check.test, check.eq

-- darktable 4.2's pipe order (v3.0), shortened: what matters is where each module sits.
local ORDER = "rawprepare,0,temperature,0,demosaic,0,exposure,0,colorin,0,channelmixerrgb,0,"
  .. "colorbalancergb,0,basecurve,0,filmic,0,sigmoid,0,filmicrgb,0,tonecurve,0,bilat,0,"
  .. "vignette,0,colorout,0,dither,0,exposure,1,gamma,0"

local function plugin(num, operation, enabled, priority)
  return string.format(
    "<plugin><num>%d</num><module>1</module><operation>%s</operation><op_params>abcd</op_params>"
      .. "<enabled>%d</enabled><blendop_params>gz00</blendop_params><blendop_version>11</blendop_version>"
      .. "<multi_priority>%d</multi_priority><multi_name></multi_name></plugin>",
    num, operation, enabled and 1 or 0, priority or 0)
end

-- A style file as darktable writes it (items in descending history order).
local function style_file(plugins)
  local body = {}
  for index = #plugins, 1, -1 do
    body[#body + 1] = plugins[index]
  end
  return '<?xml version="1.0" encoding="UTF-8"?>\n<darktable_style version="1.0"><info>'
    .. "<name>dt-deconvolve-1</name><description></description><iop_list>" .. ORDER
    .. "</iop_list></info><style>" .. table.concat(body) .. "</style></darktable_style>"
end

local function operations(plugins)
  local names = {}
  for _, text in ipairs(plugins) do
    names[#names + 1] = text:match("<operation>(.-)</operation>") .. (text:match("<enabled>0<") and "-off" or "")
  end
  return names
end

local DEFAULT_RAW = {
  plugin(0, "rawprepare", true), plugin(1, "demosaic", true), plugin(2, "colorin", true),
  plugin(3, "colorout", true), plugin(4, "gamma", true), plugin(5, "temperature", true),
  plugin(6, "filmicrgb", true), plugin(7, "exposure", true),
}

test("parse: items sorted by history number, with the pipe order", function()
  local style = assert(scene.parse(style_file(DEFAULT_RAW)))
  eq(#style.items, 8)
  eq(style.items[1].operation, "rawprepare")
  eq(style.items[8].operation, "exposure")
  eq(style.order["filmicrgb,0"], 11)
  eq(style.order["exposure,1"], 17)
end)

test("parse: anything but a style is refused", function()
  eq(select(2, scene.parse("<html></html>")), "not a darktable style")
  eq(select(2, scene.parse("<x><style><plugin><enabled>1</enabled></plugin></style>")),
    "a style item without number or module")
end)

test("split, darktable's default raw edit: filmic goes to the look, the export is linear", function()
  local style = assert(scene.parse(style_file(DEFAULT_RAW)))
  local parts = assert(scene.split(style))
  eq(operations(parts.scene), { "rawprepare", "demosaic", "colorin", "colorout", "gamma",
    "temperature", "filmicrgb-off", "exposure" })
  eq(operations(parts.look), { "filmicrgb" })
  local colorout = parts.scene[4]
  eq(colorout:match("<op_params>(.-)</op_params>"), scene.LINEAR_OUTPUT)
  eq(#scene.LINEAR_OUTPUT, 2 * 520) -- colorout's parameters are 520 bytes
end)

test("split: every module after the tone mapper joins the look, each history entry kept", function()
  local edit = {
    plugin(0, "exposure", true), plugin(1, "sigmoid", true), plugin(2, "bilat", true),
    plugin(3, "colorbalancergb", true), plugin(4, "vignette", true), plugin(5, "bilat", false),
    plugin(6, "exposure", true, 1), plugin(7, "dither", true), plugin(8, "colorout", true),
  }
  local parts = assert(scene.split(assert(scene.parse(style_file(edit)))))
  eq(operations(parts.look), { "sigmoid", "bilat", "vignette", "bilat-off", "exposure", "dither" })
  eq(operations(parts.scene), { "exposure", "sigmoid-off", "bilat-off", "colorbalancergb",
    "vignette-off", "bilat-off", "exposure-off", "dither-off", "colorout" })
end)

test("boundary: the first tone mapper that is on; a switched-off one does not count", function()
  local on = assert(scene.parse(style_file({ plugin(0, "basecurve", true), plugin(1, "filmicrgb", true) })))
  eq(scene.boundary(on), 8)
  local off = assert(scene.parse(style_file({ plugin(0, "basecurve", true), plugin(1, "basecurve", false),
    plugin(2, "filmicrgb", true) })))
  eq(scene.boundary(off), 11)
end)

test("boundary: without a tone mapper, the display-referred modules after their place", function()
  local style = assert(scene.parse(style_file({ plugin(0, "exposure", true), plugin(1, "tonecurve", true) })))
  eq(scene.boundary(style), 12)
  local parts = assert(scene.split(style))
  eq(operations(parts.look), { "tonecurve" })
end)

test("split: a style without a pipe order cannot be split", function()
  local text = style_file(DEFAULT_RAW):gsub("<iop_list>.-</iop_list>", "")
  eq(select(2, scene.split(assert(scene.parse(text)))), "the style lists no pipe order")
end)

test("style_text: a new name (escaped), the same order, the given items", function()
  local style = assert(scene.parse(style_file(DEFAULT_RAW)))
  local parts = assert(scene.split(style))
  local text = scene.style_text(style, "look <1> & more", parts.look)
  eq(text:match("<name>(.-)</name>"), "look &lt;1&gt; &amp; more")
  eq(text:match("<iop_list>(.-)</iop_list>"), ORDER)
  local again = assert(scene.parse(text))
  eq(#again.items, 1)
  eq(again.items[1].operation, "filmicrgb")
end)

check.run()
