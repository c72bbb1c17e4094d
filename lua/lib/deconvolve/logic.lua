--[[
  The pure part of the darktable plug-in `deconvolve.lua`: building `dt-deconvolve` command
  lines, quoting them for the shell, reading the client's answers, choosing output names and
  deciding which tags travel with a result. Nothing here touches darktable, the disk or the
  shell, so plain `lua5.4` tests it (tests/lua/).

  The module sits under `lib/` because script_manager treats every other `.lua` file as a script
  of its own.
]]

local logic = {}

-- The plug-in's slider ranges and defaults, in the user's terms (within the command's own,
-- which tests/lua/test_lua_logic.py checks).
logic.BLUR = { min = 3, max = 51, default = 15 }
-- The panel's "blur size": found by the engine (`--blur auto`, the default), or the slider's.
logic.BLUR_MODES = { "auto", "slider" }
logic.TOLERANCE = { min = 0.5, max = 20, default = 5 }
logic.PRIORITY = { min = -1, max = 1, default = 0 }
logic.WINDOWS = { "auto", "centre" }
logic.DEFAULT_SUFFIX = "_deconv"
logic.PREVIEW_SIDE = 1600 -- longest side, in pixels, of an "output size: preview" result
logic.TAG_ROOT = "dt-deconvolve"
-- The longest line of the command's that is read (bytes): its longest, `DONE` and a path of 4096
-- bytes each escaped as %XX, is 12 KiB; a longer one is no answer of its.
logic.MAX_LINE = 65536
-- The plug-in's private folder in darktable's temporary one (darktable's process id, then
-- mktemp's random characters), which `dt-deconvolve cache clean --on-exit --exports-dir` removes
-- once that darktable has gone (PRIVATE_FOLDER in worker/cli/cache.py).
logic.PRIVATE_FOLDER = "dt-deconvolve-%d-XXXXXXXX"
-- Where install.sh puts the command, in the home folder (tests/lua/test_lua_logic.py checks it).
logic.INSTALLED_COMMAND = ".local/bin/dt-deconvolve"

-- Exit statuses of `dt-deconvolve` (worker/cli/exit_status.py): a copy that
-- tests/lua/test_lua_logic.py checks against the Python one.
logic.EXIT = { OK = 0, FAILED = 1, USAGE = 2, CANCELLED = 3, TAKEN = 4, INTERRUPTED = 130,
  READER_GONE = 141 }

--- Round `value` to `digits` decimals (sliders hand back float noise: 2.25 reads 2.2499997).
function logic.round(value, digits)
  local factor = 10 ^ (digits or 0)
  local rounded = math.floor(value * factor + 0.5) / factor
  if digits == nil or digits == 0 then
    return math.tointeger(rounded) or rounded
  end
  return rounded
end

--- A number as a short decimal for a command line or a tag: 5 -> "5", 2.5 -> "2.5", -0.3 -> "-0.3".
function logic.format_number(value)
  local text = string.format("%.2f", logic.round(value, 2))
  text = text:gsub("0+$", ""):gsub("%.$", "")
  if text == "-0" then
    return "0"
  end
  return text
end

--- The blur size as the engine wants it: an odd whole number of pixels within BLUR's range.
function logic.odd_blur(value)
  local size = math.floor(value + 0.5)
  if size % 2 == 0 then
    size = size + 1
  end
  return math.max(logic.BLUR.min, math.min(logic.BLUR.max, size))
end

--- `--blur` as the engine wants it: "auto" (the engine finds the size) or the slider's odd size,
--- which a varying run always takes (the engine learns each part's blur at a size given).
function logic.blur_arg(settings)
  if settings.blur_mode == "auto" and not settings.varying then
    return "auto"
  end
  return tostring(logic.odd_blur(settings.blur))
end

--- `value` limited to [range.min, range.max] and rounded to `digits` decimals.
function logic.clamp(value, range, digits)
  return logic.round(math.max(range.min, math.min(range.max, value)), digits)
end

--- Quote one word for a POSIX shell: any path, with spaces, quotes or `$`, arrives verbatim.
--- A word with `=` is quoted too: as the first word, `X=1` would be an assignment, not a program.
function logic.quote(word)
  word = tostring(word)
  if word:match("^[%w@%%+:,./_-]+$") then
    return word
  end
  return "'" .. word:gsub("'", "'\\''") .. "'"
end

--- A shell command line: the program, then each argument, each quoted.
function logic.command_line(program, args)
  local words = { logic.quote(program) }
  for _, arg in ipairs(args) do
    words[#words + 1] = logic.quote(arg)
  end
  return table.concat(words, " ")
end

--- `text` without the characters of the class `class` (a Lua pattern item, default `%s`) at its
--- end, found one byte at a time from the end: a pattern such as "%s+$" retries from every byte
--- of a long run of spaces, and a command's megabyte line took minutes of darktable's Lua thread.
local function trim_end(text, class)
  local last, item = #text, "^" .. (class or "%s")
  while last > 0 and text:find(item, last) do
    last = last - 1
  end
  return text:sub(1, last)
end

--- Append the values of `extra` to the list `args`; returns `args`.
local function extend(args, extra)
  for _, value in ipairs(extra) do
    args[#args + 1] = value
  end
  return args
end

--[[ The settings of one run, as the panel shows them:
       blur_mode ("auto" | "slider", BLUR_MODES), blur (the slider's odd px),
       tolerance (percent), priority (-1 denoise ... +1 deblur),
       window ("auto" | "centre"), preview (true: at most PREVIEW_SIDE px a side) and its
       scale (known once the picture is exported: `preview_scale`),
       varying (true: the blur differs across the frame, one kernel per part). ]]

--- The engine and PSF options shared by `key` and `submit`: the settings that change pixels (a
--- preview's scale aside: the key names a preview by its export, `export_signature`).
function logic.engine_args(settings)
  local args = {
    "--blur", logic.blur_arg(settings),
    "--window", settings.window or "auto",
    "--tolerance", logic.format_number(settings.tolerance),
    "--priority", logic.format_number(settings.priority),
  }
  if settings.varying then
    args[#args + 1] = "--varying"
  end
  return args
end


--- A text naming the export settings that change the pixels of the result (part of the cache
--- key): `export` = { bpp = bits per sample, max_side = the result's longest side in px (a
--- preview's; 0: the picture's own size), profile = darktable's export profile settings as
--- text (they override the picture's output profile) }; `scene`: exported before the tone
--- mapper, in scene light.
function logic.export_signature(export, scene)
  return string.format("tiff bpp=%d max=%d profile=%s%s", export.bpp, export.max_side,
    export.profile, scene and " light=scene" or "")
end

--- The longest side a run's results may have: PREVIEW_SIDE for a preview, 0 (none) otherwise.
function logic.result_side(settings)
  return settings.preview and logic.PREVIEW_SIDE or 0
end

--- The scale of a preview of an export `width` x `height` (crop and all): its longest side
--- shrinks to PREVIEW_SIDE pixels (never enlarged; 1 for an unknown size).
function logic.preview_scale(width, height)
  local longest = math.max(width or 0, height or 0)
  if longest <= logic.PREVIEW_SIDE then
    return 1
  end
  return math.max(0.05, math.floor(100 * logic.PREVIEW_SIDE / longest) / 100)
end

--- `dt-deconvolve key ...`: `source` is the picture (the original, or the export when the image
--- has no sidecar); `image` = { sidecar = path or nil, duplicate = index }.
function logic.key_args(source, image, settings, export_signature)
  local args = { "key", source }
  if image.sidecar then
    extend(args, { "--xmp", image.sidecar })
  end
  extend(args, { "--duplicate", tostring(image.duplicate or 0), "--export", export_signature })
  return extend(args, logic.engine_args(settings))
end

--- `dt-deconvolve cache lookup KEY -o OUTPUT --no-clobber`. Every output of the plug-in is a
--- name it chose free; `--no-clobber` keeps a file another program makes there meanwhile.
function logic.lookup_args(key, output)
  return { "cache", "lookup", key, "-o", output, "--no-clobber" }
end

--- `dt-deconvolve submit EXPORT -o OUTPUT --no-clobber --key KEY [engine options] --wait`.
function logic.submit_args(export, output, key, settings)
  local args = { "submit", export, "-o", output, "--no-clobber", "--key", key }
  extend(args, logic.engine_args(settings))
  if settings.scale and settings.scale < 1 then
    extend(args, { "--scale", logic.format_number(settings.scale) })
  end
  args[#args + 1] = "--wait"
  return args
end

--- `dt-deconvolve cache clean --on-exit --exports-dir DIR [--keep-results]`: also removes the
--- temporary exports a crash may have left in DIR.
function logic.clean_args(keep_results, exports_dir)
  local args = { "cache", "clean", "--on-exit", "--exports-dir=" .. exports_dir } -- (a "-x" too)
  if keep_results then
    args[#args + 1] = "--keep-results"
  end
  return args
end

logic.EXIT_LIMIT = 30 -- seconds the commands run as darktable quits may take

--- `line` (a shell command) stopped after `seconds` (SIGTERM, then SIGKILL 5 s later): what
--- darktable runs as it quits must not keep it from quitting.
function logic.time_limited(line, seconds)
  return string.format("timeout -k 5 %d %s", seconds, line)
end

--- A cache key as `key` prints it: one line of hex digits; nil for anything else.
function logic.parse_key(output)
  return (output or ""):match("^%s*(%x+)%s*$")
end

--- A path as the command writes it (worker/cli/lines.py): one field of printable ASCII, every
--- other byte and `%` as `%XX`. Returns the path's bytes, or nil for anything else (a space, a
--- line break, a stray `%`): a file name cannot forge a field.
function logic.unescape(field)
  if type(field) ~= "string" or not field:match("^[!-~]+$") then
    return nil
  end
  if field:gsub("%%%x%x", ""):find("%", 1, true) then
    return nil
  end
  local path = field:gsub("%%(%x%x)", function(hex)
    return string.char(tonumber(hex, 16))
  end)
  if path:find("\0", 1, true) then -- (no file's name holds NUL)
    return nil
  end
  return path
end

--- The answer of `cache lookup`: "hit", path or "miss"; nil for anything else.
function logic.parse_lookup(output)
  local text = trim_end(output or "")
  if #text > logic.MAX_LINE then
    return nil
  end
  if text == "miss" then
    return "miss"
  end
  local path = logic.unescape(text:match("^hit (%S+)$"))
  if path then
    return "hit", path
  end
  return nil
end

--- `BLUR <confidence> <kernel> <reason>` from `submit --wait` or `cache kernel`: how sure the
--- engine is of the blur it found, and which kernel it used (none, free-form, gaussian, disc,
--- or varying: one per part of the picture).
function logic.parse_blur_line(line)
  local confidence, kernel, reason = line:match("^BLUR (%S+) ([%w%-]+) (.+)$")
  confidence = tonumber(confidence)
  if confidence and confidence == confidence then -- (not NaN)
    return {
      kind = "blur",
      confidence = math.max(0, math.min(1, confidence)),
      kernel = kernel,
      reason = logic.printable(reason),
    }
  end
  return nil
end

--- `dt-deconvolve cache kernel KEY -o OUTPUT --no-clobber`: the blur found for a key, and its
--- picture.
function logic.kernel_args(key, output)
  return { "cache", "kernel", key, "-o", output, "--no-clobber" }
end

--- The answer of `cache kernel`: the blur (a parse_blur_line table, or nil when the kernel was
--- given, not estimated) and "hit", path or "miss"; nil for an answer that is neither.
function logic.parse_kernel(output)
  local lines = {}
  for line in (output or ""):gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  local blur = lines[1] and logic.parse_blur_line(lines[1])
  if blur then
    table.remove(lines, 1)
  end
  local found, path = logic.parse_lookup(#lines == 1 and lines[1] or nil)
  if found == nil then
    return nil
  end
  return blur or nil, found, path
end

--- Where the kernel's picture goes: beside the result, named after it (`a_deconv.kernel.png`).
function logic.kernel_path(result)
  return (result:gsub("%.[^./]*$", "")) .. ".kernel.png"
end

--- The tag that records the blur a result was deblurred with: the kernel and the confidence.
function logic.blur_tag(blur)
  return string.format("%s|kernel %s|confidence %.1f", logic.TAG_ROOT, blur.kernel, blur.confidence)
end

--- One line of `submit --wait`: {kind = "worker", identity} | {kind = "job", id} |
--- {kind = "progress", fraction} | a BLUR line's (`parse_blur_line`) | {kind = "done", path}
--- (the path unescaped); nil for a line that is none of these.
function logic.parse_line(line)
  line = trim_end(line or "", "[\r\n]")
  if #line > logic.MAX_LINE then
    return nil
  end
  local id = line:match("^JOB (%S+)%s*$")
  if id then
    return { kind = "job", id = id }
  end
  local pid, started = line:match("^WORKER (%d+) (%d+)%s*$")
  if pid then -- the submit started the worker: "PID:STARTED" names it
    return { kind = "worker", identity = pid .. ":" .. started }
  end
  local fraction = tonumber(line:match("^PROGRESS (%S+)"))
  if fraction then -- (the stage after it is not shown: darktable's job has a bar, no text)
    return { kind = "progress", fraction = math.max(0, math.min(1, fraction)) }
  end
  local blur = logic.parse_blur_line(line)
  if blur then
    return blur
  end
  local path = logic.unescape(line:match("^DONE (%S+)$"))
  if path then
    return { kind = "done", path = path }
  end
  return nil
end

--- The exit status of a finished command from what `file:close()` or `os.execute` return
--- (Lua 5.4: ok, "exit" | "signal", code). A signal counts as a failure.
function logic.exit_code(ok, how, code)
  if how == "exit" then
    return code
  end
  if how == "signal" then
    return 128 + (code or 0)
  end
  return ok and 0 or 1
end

--- The overall fraction of a batch: `index` of `count` images, this one `fraction` done.
function logic.batch_fraction(index, count, fraction)
  if count < 1 then
    return 1
  end
  return math.max(0, math.min(1, (index - 1 + (fraction or 0)) / count))
end

--- File name without its extension: "IMG_1.CR2" -> "IMG_1", ".hidden" -> ".hidden".
function logic.stem(filename)
  return filename:match("^(.+)%.[^.]*$") or filename
end

--- A safe output suffix: the user's, without path separators; the default when empty.
function logic.clean_suffix(suffix)
  suffix = (suffix or ""):gsub("[/\\%c]", "")
  if suffix == "" then
    return logic.DEFAULT_SUFFIX
  end
  return suffix
end

logic.MAX_NAME = 255 -- bytes in a file name (Linux)
logic.MAX_TRIES = 1000 -- `_1` ... `_999`
-- What the longest name made from a result's stem adds to it: its kernel picture's (the
-- sidecar's `.tif.xmp` is shorter). The command writes each through a temporary whose name it
-- cuts to fit (worker/atomic.py), so that adds nothing.
logic.LONGEST_EXTRA = #".kernel.png"

--- Where a result goes: `<folder>/<stem><suffix>.tif` next to the original, never where
--- `taken(path)` says something is: then `<stem><suffix>_1.tif`, `_2`, ... Nil when no name
--- is free among `MAX_TRIES`, or the names (the result's, its sidecar's, its kernel picture's)
--- would be too long for the file system.
function logic.output_path(folder, filename, suffix, taken)
  local stem = logic.stem(filename) .. logic.clean_suffix(suffix)
  for n = 0, logic.MAX_TRIES - 1 do
    local name = n == 0 and stem or string.format("%s_%d", stem, n)
    if #name + logic.LONGEST_EXTRA > logic.MAX_NAME then
      return nil
    end
    local candidate = folder .. "/" .. name .. ".tif"
    if not taken(candidate) then
      return candidate
    end
  end
  return nil
end

--- `text` with every occurrence of `old` (plain text, not a pattern) replaced by `new`.
function logic.replace_plain(text, old, new)
  local parts, start = {}, 1
  while old ~= "" do
    local first, last = text:find(old, start, true)
    if not first then
      break
    end
    parts[#parts + 1] = text:sub(start, first - 1) .. new
    start = last + 1
  end
  parts[#parts + 1] = text:sub(start)
  return table.concat(parts)
end

--- A line from a command, fit for a message: terminal colour codes dropped, other control
--- characters (carriage returns, escapes; the C1 controls U+0080-U+009F), the line separators and
--- the marks that turn text around (U+202E shows `photo<U+202E>fit.exe` as `photoexe.tif`) as
--- spaces, no space at either end.
function logic.printable(text)
  text = text:gsub("\27%[[%d;?]*[%a@]", ""):gsub("%c", " "):gsub("\xC2[\x80-\x9F]", " ")
  text = text:gsub("\xE2\x80[\x8E\x8F\xA8-\xAE]", " "):gsub("\xE2\x81[\xA6-\xA9]", " ")
  text = text:gsub("\xD8\x9C", " ") -- U+061C, the Arabic letter mark
  return trim_end((text:gsub("^%s+", "")))
end

-- The code points a message writes as escapes (`logic.one_line`): the C0 and C1 controls, the
-- no-break and other spaces, the soft hyphen, and the format characters and separators that turn
-- or break a line (U+202E shows `photo<U+202E>fit.exe` as `photoexe.tif`).
local ESCAPED = {
  { 0x00, 0x1F }, { 0x7F, 0xA0 }, { 0xAD, 0xAD }, { 0x061C, 0x061C }, { 0x180E, 0x180E },
  { 0x2000, 0x200F }, { 0x2028, 0x202F }, { 0x205F, 0x206F }, { 0x3000, 0x3000 },
  { 0xFEFF, 0xFEFF }, { 0xFFF9, 0xFFFB },
}

local function escaped(code)
  for _, range in ipairs(ESCAPED) do
    if code >= range[1] and code <= range[2] then
      return true
    end
  end
  return false
end

--- `text` as one line that shows every name as it is, as the command writes its messages
--- (worker/errors.py, `one_line`): each character that a terminal or GTK acts on (line breaks,
--- escapes, the controls, the marks that turn text around) written `\xNN` under U+0100,
--- `\uNNNN` or `\UNNNNNNNN` above, and each byte that is not part of valid UTF-8 `\xNN` (GTK
--- drops a whole message that holds one, and a picture's name need not be UTF-8).
function logic.one_line(text)
  if not text:find("[^\32-\126]") then
    return text
  end
  local parts, position = {}, 1
  while position <= #text do
    local ok, code = pcall(utf8.codepoint, text, position)
    if not ok then -- a byte outside UTF-8
      parts[#parts + 1] = string.format("\\x%02x", text:byte(position))
      position = position + 1
    else
      local length = code < 0x80 and 1 or code < 0x800 and 2 or code < 0x10000 and 3 or 4
      if not escaped(code) then
        parts[#parts + 1] = text:sub(position, position + length - 1)
      elseif code < 0x100 then
        parts[#parts + 1] = string.format("\\x%02x", code)
      else
        parts[#parts + 1] = string.format(code < 0x10000 and "\\u%04x" or "\\U%08x", code)
      end
      position = position + length
    end
  end
  return table.concat(parts)
end

--- The tags a result inherits: all but darktable's own (`darktable|...`) and this plug-in's.
function logic.copyable_tags(names)
  local kept = {}
  for _, name in ipairs(names) do
    local root = name:match("^([^|]*)")
    if root ~= "darktable" and root ~= logic.TAG_ROOT then
      kept[#kept + 1] = name
    end
  end
  return kept
end

--- The tag recording how a result was made: `dt-deconvolve|blur auto|tolerance 5`, or with the
--- slider's size, `dt-deconvolve|blur 15|tolerance 5`.
function logic.settings_tag(settings)
  return string.format(
    "%s|blur %s|tolerance %s",
    logic.TAG_ROOT,
    logic.blur_arg(settings),
    logic.format_number(settings.tolerance)
  )
end

--- The tags recording how a result was made: its settings (`settings_tag`) and, on a preview
--- shrunk to PREVIEW_SIDE px a side (`settings.scale` under 1), `dt-deconvolve|preview`; a
--- picture already that small comes back at its full size, not tagged as a preview.
function logic.result_tags(settings)
  local tags = { logic.settings_tag(settings) }
  if settings.preview and (settings.scale or 1) < 1 then
    tags[#tags + 1] = logic.TAG_ROOT .. "|preview"
  end
  return tags
end

--- The reason to show for a failed command: its `error:` line without the program's name, else
--- the last line it wrote, else `fallback`.
function logic.error_reason(text, fallback)
  local last
  for line in (text or ""):gmatch("[^\n]+") do
    local reason = trim_end(line:match("error: (.*)") or "")
    if reason ~= "" then
      return logic.printable(reason)
    end
    if line:match("%S") then
      last = line
    end
  end
  return last and logic.printable(last) or fallback
end

return logic
