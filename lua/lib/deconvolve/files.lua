--[[ Whole-file reads and writes for the plug-in's modules: small text files (sidecars, styles,
     a command's error output), and the size of an exported TIFF. ]]

local files = {}

--- The text of the file at `path`, or nil when it cannot be opened.
function files.read(path)
  local file = io.open(path, "r")
  if not file then
    return nil
  end
  local text = file:read("a")
  file:close()
  return text
end

--- Write `text` to the file at `path` (replacing it); returns whether it could be opened.
function files.write(path, text)
  local file = io.open(path, "w")
  if not file then
    return false
  end
  file:write(text)
  file:close()
  return true
end

--- The width and height of the TIFF at `path` (its first image's, read from its first IFD, in
--- either byte order), or nil when it is no TIFF.
function files.tiff_size(path)
  local file = io.open(path, "rb")
  if not file then
    return nil
  end
  local ok, width, height = pcall(function()
    local head = file:read(8)
    local order = ({ II = "<", MM = ">" })[head:sub(1, 2)]
    if not order or string.unpack(order .. "I2", head, 3) ~= 42 then
      return nil
    end
    file:seek("set", string.unpack(order .. "I4", head, 5))
    local count = string.unpack(order .. "I2", file:read(2))
    local entries = file:read(12 * count)
    local size = {}
    for index = 0, count - 1 do
      local tag, kind = string.unpack(order .. "I2I2", entries, 12 * index + 1)
      if tag == 256 or tag == 257 then -- ImageWidth, ImageLength: a SHORT or a LONG, left-justified
        size[tag] = string.unpack(order .. (kind == 3 and "I2" or "I4"), entries, 12 * index + 9)
      end
    end
    return size[256], size[257]
  end)
  file:close()
  if ok and width and height then
    return width, height
  end
  return nil
end

return files
