--[[ Whole-file reads and writes for the plug-in's modules: small text files (sidecars, styles,
     a command's error output). ]]

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

return files
