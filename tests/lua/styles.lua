-- Style files as darktable 4.2 writes them, for the plug-in's Lua tests.
local styles = {}

-- darktable 4.2's pipe order (v3.0), shortened: what matters is where each module sits.
styles.ORDER = "rawprepare,0,temperature,0,demosaic,0,exposure,0,colorin,0,channelmixerrgb,0,"
  .. "colorbalancergb,0,basecurve,0,filmic,0,sigmoid,0,filmicrgb,0,tonecurve,0,bilat,0,"
  .. "vignette,0,colorout,0,dither,0,exposure,1,gamma,0"

function styles.plugin(num, operation, enabled, priority)
  return string.format(
    "<plugin><num>%d</num><module>1</module><operation>%s</operation><op_params>abcd</op_params>"
      .. "<enabled>%d</enabled><blendop_params>gz00</blendop_params><blendop_version>11</blendop_version>"
      .. "<multi_priority>%d</multi_priority><multi_name></multi_name></plugin>",
    num, operation, enabled and 1 or 0, priority or 0)
end

-- A style file as darktable writes it (items in descending history order).
function styles.style_file(plugins)
  local body = {}
  for index = #plugins, 1, -1 do
    body[#body + 1] = plugins[index]
  end
  return '<?xml version="1.0" encoding="UTF-8"?>\n<darktable_style version="1.0"><info>'
    .. "<name>dt-deconvolve-1</name><description></description><iop_list>" .. styles.ORDER
    .. "</iop_list></info><style>" .. table.concat(body) .. "</style></darktable_style>"
end

-- darktable's default edit of a raw (scene-referred workflow), in history order.
local plugin = styles.plugin
styles.DEFAULT_RAW = {
  plugin(0, "rawprepare", true), plugin(1, "demosaic", true), plugin(2, "colorin", true),
  plugin(3, "colorout", true), plugin(4, "gamma", true), plugin(5, "temperature", true),
  plugin(6, "filmicrgb", true), plugin(7, "exposure", true),
}

return styles
