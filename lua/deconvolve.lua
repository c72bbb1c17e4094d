--[[
  deconvolve.lua - sharpen blurred pictures by blind deconvolution, from darktable's lighttable

  Part of dt-deconvolve. License: GPL-3.0-or-later.
]]
--[[
  A "deconvolve" panel in lighttable (and the shortcut "deconvolve selected images") hands each
  selected picture to dt-deconvolve: the worker estimates the blur of the picture and removes it,
  and the sharp version comes back next to the original as <name>_deconv.tif, grouped with it and
  carrying its tags, rating, colour labels and text metadata (`TEXT_METADATA`). A second run with the same
  edits and settings takes the result from dt-deconvolve's cache without exporting again.

  Needs: darktable 4.2 or newer (Lua API 9.0.0) and the `dt-deconvolve` command (install.sh of
  dt-deconvolve installs both). Works with and without script_manager.
]]

local dt = require "darktable"
local files = require "lib/deconvolve/files"
local logic = require "lib/deconvolve/logic"
local roundtrip = require "lib/deconvolve/roundtrip"
local scene = require "lib/deconvolve/scene"

local MODULE = "deconvolve"
local MIN_API_MAJOR = 9 -- darktable 4.2
local DARKTABLE_PATH_MAX = 511 -- the longest folder path darktable 4.2 keeps for a picture

dt.gettext.bindtextdomain(MODULE, dt.configuration.config_dir .. "/lua/locale/")

local function _(msgid)
  return dt.gettext.dgettext(MODULE, msgid)
end

-- A line in darktable's log (`-d lua`; `printer` dt.print_log, or dt.print_error for a failure):
-- one line whatever the names it quotes hold, so that no name can forge another.
local function log(text, printer)
  (printer or dt.print_log)("deconvolve: " .. logic.one_line(text))
end

local script_data = {}

script_data.metadata = {
  name = _("deconvolve"),
  purpose = _("sharpen blurred pictures by blind deconvolution"),
  author = "dt-deconvolve contributors",
}

-- What the plug-in knows during one darktable session.
local state = {
  gui_installed = false, -- panel, preferences and shortcuts registered
  events_registered = false, -- shortcut and exit events
  widgets = {}, -- the panel's widgets, by name
  batch = nil, -- the run in progress, see `deconvolve_images`
  used = false, -- a command ran this session: clean up on exit
  ours = nil, -- the worker a submit of ours started ("PID:STARTED"): stopped on exit if it runs
  tmp = nil, -- this run's own temporary folder (`private_folder`), while it exists
}

-- Exports are full-size 32-bit float TIFFs: nothing is clipped or rounded before deblurring.
local EXPORT = { bpp = 32 }
-- A picture's share of its progress bar: the export's, then the job's (the import, the rest).
local EXPORT_SHARE, JOB_SHARE = 0.1, 0.85
local COLOUR_LABELS = { "red", "yellow", "green", "blue", "purple" }
local TEXT_METADATA = { "title", "description", "creator", "publisher", "rights" }

----------------------------------------------------------------------------------------------
-- files and commands

local function file_size(path)
  local file = path and io.open(path, "rb")
  if not file then
    return nil
  end
  local size = file:seek("end")
  file:close()
  return size
end

-- Whether anything (a file, a folder, a FIFO...) has this name, without opening it: opening a
-- FIFO waits for a writer for ever. Opening `path/` fails at once, with ENOENT only when nothing
-- is there (a file or FIFO gives ENOTDIR; a folder opens).
local ENOENT = 2
local function file_exists(path)
  local handle, _, code = io.open(path .. "/", "rb")
  if handle then
    handle:close()
    return true
  end
  return code ~= ENOENT
end

-- Whether `path` passes each of the shell's `test` checks (`-f`, `-L`...), asked of the file
-- system without opening the path.
local function passes(path, ...)
  local checks = {}
  for _, flag in ipairs({ ... }) do
    checks[#checks + 1] = "test " .. flag .. " " .. logic.quote(path)
  end
  return logic.exit_code(os.execute(table.concat(checks, " && "))) == 0
end

-- A regular file (what a sidecar must be: reading a FIFO would wait for ever).
local function regular_file(path)
  return passes(path, "-f")
end

-- A symbolic link, even one to nothing (which `file_exists` cannot see).
local function is_link(path)
  return passes(path, "-L")
end

-- A file the worker wrote for us: regular, not a link (a link could lead the import, and every
-- change after it, to the original or any other picture).
local function written_file(path)
  return regular_file(path) and not is_link(path)
end

-- Whether a result may not take this name: something is there (a file, a folder, a FIFO, a
-- link), or at its sidecar's name (darktable would read an old sidecar into the new result),
-- or at its kernel picture's name (a user's file there would be replaced).
local function name_taken(path)
  for _, name in ipairs({ path, path .. ".xmp", logic.kernel_path(path) }) do
    if file_exists(name) or is_link(name) then
      return true
    end
  end
  return false
end

-- The file names the library holds in the folder of `image` (its film roll), whether or not
-- their files are still there: a result must not take one (a result deleted outside darktable
-- keeps its entry, and darktable would not import a new file under its name).
local function library_names(image)
  local names, film = {}, image.film
  for index = 1, film and #film or 0 do
    local known = film[index]
    if known then
      names[known.filename] = true
    end
  end
  return names
end

-- Whether a result may not take this name beside `image`: `name_taken`, or the library's.
local function taken_beside(image)
  local known = library_names(image)
  return function(path)
    return name_taken(path) or known[path:match("[^/]*$")] == true
  end
end

-- Whether a result can be made in this folder: not one mounted read-only (a card, a share) nor
-- one without write permission. Asked before the export and the job, which took their time
-- before the worker found it out.
local function writable_folder(folder)
  return passes(folder, "-w", "-x")
end

local function read_text(path)
  return files.read(path) or ""
end

-- What a shell command prints, read as `format` ("l": its first line, "n": a number), or nil.
local function command_says(command, format)
  local pipe = io.popen(command)
  local said = pipe and pipe:read(format)
  if pipe then
    pipe:close()
  end
  return said
end

--[[ A folder of our own (mode 0700, unpredictable name: `mktemp -d`) in darktable's temporary
     folder, made when first needed and removed when the run ends (`remove_private_folder`):
     in a shared /tmp another user could put a link at a predictable name, and darktable's
     export, its style export or the shell's redirection would write through it. ]]
local function private_folder()
  if not state.tmp then
    -- named with darktable's process id, so that `cache clean --exports-dir` at the next exit
    -- removes one that a darktable killed mid-run left behind, and only such a one
    local pid = command_says("echo $PPID", "n") -- (the shell's parent: darktable)
    local pattern = string.format("%s/" .. logic.PRIVATE_FOLDER, dt.configuration.tmp_dir,
      math.tointeger(pid) or 0)
    local made = command_says("mktemp -d " .. logic.quote(pattern) .. " 2>/dev/null", "l")
    if not made or made == "" then
      error(string.format(_("cannot make a temporary folder in %s"), dt.configuration.tmp_dir), 0)
    end
    state.tmp = made
  end
  return state.tmp
end

local function remove_private_folder()
  if state.tmp then
    os.execute("rm -rf " .. logic.quote(state.tmp))
    state.tmp = nil
  end
end

-- A fresh file name in this run's own temporary folder.
local temp_counter = 0
local function temp_path(stem, extension)
  temp_counter = temp_counter + 1
  return string.format("%s/%s-%d%s", private_folder(), stem, temp_counter, extension)
end

-- Where `command -v` finds the program `name` on the PATH, or nil (a shell builtin is none).
local function on_path(name)
  local found = command_says("command -v " .. logic.quote(name) .. " 2>/dev/null", "l")
  return found and found:sub(1, 1) == "/" and found or nil
end

-- Where install.sh puts the command.
local function installed_command()
  return (os.getenv("HOME") or "") .. "/" .. logic.INSTALLED_COMMAND
end

local function is_executable(path)
  return passes(path, "-f", "-x")
end

--[[ The command to run: the one the preferences name (a leading `~/` is the home folder, a bare
     name is looked up on the PATH), else the one on the PATH, else where install.sh puts it.
     Nothing is stored by default: darktable kept a default found at its first start, so a
     command installed later on the PATH was never used. A stored install.sh place (engine
     0.3.19's default) where nothing is installed gives way to the PATH's. ]]
local function command_path()
  -- (spaces typed around it are no part of it)
  local path = (dt.preferences.read(MODULE, "command", "file") or ""):match("^%s*(.-)%s*$")
  local home = os.getenv("HOME")
  if home and path:sub(1, 2) == "~/" then
    path = home .. path:sub(2)
  end
  if path == "" or (path == installed_command() and not is_executable(path)) then
    return on_path("dt-deconvolve") or installed_command()
  end
  if not path:find("/", 1, true) then
    return on_path(path) or path
  end
  return path
end

--[[ Run `dt-deconvolve ARGS...`. Each line of its output goes to `on_line` as it arrives: the
     Lua lock is released while the command is silent, so darktable and the job's cancel button
     stay responsive. Returns the exit status and the command's error output. ]]
local function run_command(args, on_line)
  state.used = true
  local errors = temp_path("stderr", ".txt")
  local line_text = logic.command_line(command_path(), args)
  log(line_text)
  local pipe = io.popen(line_text .. " 2>" .. logic.quote(errors), "r")
  if not pipe then
    return logic.EXIT.FAILED, _("cannot run dt-deconvolve")
  end
  while true do
    dt.control.read(pipe)
    local line = pipe:read("l")
    if line == nil then
      break
    end
    if on_line then
      on_line(line)
    end
  end
  local code = logic.exit_code(pipe:close())
  local error_text = read_text(errors)
  os.remove(errors)
  return code, error_text
end

-- Run a command whose whole output is one answer; returns the output, or nil and the reason.
local function command_output(args)
  local lines = {}
  local code, error_text = run_command(args, function(line)
    lines[#lines + 1] = line
  end)
  if code ~= logic.EXIT.OK then
    return nil, logic.error_reason(error_text, string.format(_("dt-deconvolve failed (exit %d)"), code))
  end
  return table.concat(lines, "\n")
end

-- Which worker answered `ping --json` (its `text`): "PID:STARTED", as a submit's `WORKER`
-- line names the worker it started (a process's identity even once its pid is reused); nil
-- when none did.
local function worker_identity(text)
  local pid, started = text:match('"pid": (%d+)'), text:match('"started": (%d+)')
  return pid and started and (pid .. ":" .. started) or nil
end

-- Which worker answers now ("PID:STARTED"), or nil (at darktable's exit: a `ping` waited for).
local function answering_now()
  local line = logic.command_line(command_path(), { "ping", "--json" })
  return worker_identity(command_says(logic.time_limited(line, logic.EXIT_LIMIT) .. " 2>/dev/null",
    "a") or "")
end

----------------------------------------------------------------------------------------------
-- settings: the panel's widgets, persisted in darktablerc as lua/deconvolve/<name>

-- A saved number, or `default` when none was saved (darktablerc reads 0 for a missing key; no
-- slider's range holds a 0 that differs from its default).
local function read_number(name, kind, default)
  local value = dt.preferences.read(MODULE, name, kind)
  if value == nil or value == 0 then
    return default
  end
  return value
end

-- The panel's drop-down lists: each one's widget and preference name, the values it stores (its
-- entries in order: the first is the default) and how a run's settings hold its choice.
local CHOICES = {
  blur_mode = { values = logic.BLUR_MODES, set = function(settings, value)
    settings.blur_mode = value
  end },
  window = { values = logic.WINDOWS, set = function(settings, value)
    settings.window = value
  end },
  output_size = { values = { "full", "preview" }, set = function(settings, value)
    settings.preview = value == "preview"
  end },
  blur_across = { values = { "same", "varies" }, set = function(settings, value)
    settings.varying = value == "varies"
  end },
}

-- The entry of the list `name` that was saved (its number; 1, the default, when none was).
local function saved_choice(name)
  local stored = dt.preferences.read(MODULE, name, "string")
  for index, value in ipairs(CHOICES[name].values) do
    if value == stored then
      return index
    end
  end
  return 1
end

-- The settings of the entries `chosen` (list name -> entry number) and the sliders' values.
local function settings_of(chosen, blur, tolerance, priority)
  local settings = {
    blur = logic.odd_blur(blur),
    tolerance = logic.clamp(tolerance, logic.TOLERANCE, 2),
    priority = logic.clamp(priority, logic.PRIORITY, 2),
  }
  for name, list in pairs(CHOICES) do
    list.set(settings, list.values[chosen[name]] or list.values[1])
  end
  return settings
end

local function saved_settings()
  local chosen = {}
  for name in pairs(CHOICES) do
    chosen[name] = saved_choice(name)
  end
  return settings_of(chosen, read_number("blur_size", "integer", logic.BLUR.default),
    read_number("tolerance", "float", logic.TOLERANCE.default),
    read_number("priority", "float", logic.PRIORITY.default)), chosen
end

-- The settings shown in the panel (or the saved ones before the panel exists); saved for later.
local function current_settings()
  local w = state.widgets
  local settings, chosen = saved_settings()
  if w.blur then
    for name in pairs(CHOICES) do
      chosen[name] = w[name].selected
    end
    settings = settings_of(chosen, w.blur.value, w.tolerance.value, w.priority.value)
    w.blur.value = settings.blur -- show the odd size actually used
  end
  for name, list in pairs(CHOICES) do
    dt.preferences.write(MODULE, name, "string", list.values[chosen[name]] or list.values[1])
  end
  dt.preferences.write(MODULE, "blur_size", "integer", settings.blur)
  dt.preferences.write(MODULE, "tolerance", "float", settings.tolerance)
  dt.preferences.write(MODULE, "priority", "float", settings.priority)
  return settings
end

local function output_suffix()
  return logic.clean_suffix(dt.preferences.read(MODULE, "suffix", "string"))
end

-- Deblur in scene light, before the tone mapper (the default), or the finished picture.
local function scene_referred()
  return not dt.preferences.read(MODULE, "finished_export", "bool")
end

----------------------------------------------------------------------------------------------
-- one run: a darktable job over the selected images

local function set_progress(batch, fraction)
  if not batch.job_closed then
    pcall(function()
      batch.job.percent = fraction
    end)
  end
end

local function close_job(batch)
  if not batch.job_closed then
    batch.job_closed = true -- setting `valid = false` twice can crash darktable 4.2
    pcall(function()
      if batch.job.valid then
        batch.job.valid = false
      end
    end)
  end
end

-- Stop the run: the worker's job, then the darktable job. From the job's cancel button or the
-- "cancel deconvolution" shortcut.
local function cancel_batch(batch)
  if batch.cancelled then
    return
  end
  batch.cancelled = true
  if batch.worker_job then
    run_command({ "cancel", batch.worker_job })
  end
  close_job(batch)
end

local function export_image(image, path)
  local format = dt.new_format("tiff")
  format.bpp = EXPORT.bpp
  os.remove(path)
  -- API 9.0.0 returns false on success (the meaning flipped later): trust the file, not the value
  pcall(format.write_image, format, image, path)
  return (file_size(path) or 0) > 0
end

-- darktable's export settings of the output profile, which its exports follow (the output
-- profile module reads them as it exports: they override the picture's own), as one text.
local function export_profile()
  local function setting(name, kind)
    return tostring(dt.preferences.read("darktable", "plugins/lighttable/export/" .. name, kind))
  end
  return table.concat({ setting("icctype", "integer"), setting("iccprofile", "string"),
    setting("iccintent", "integer") }, ":")
end

local function cache_key(source, image, settings)
  local export = { bpp = EXPORT.bpp, max_side = logic.result_side(settings), profile = export_profile() }
  local output, reason = command_output(logic.key_args(source, image, settings,
    logic.export_signature(export, settings.scene)))
  if not output then
    return nil, reason
  end
  local key = logic.parse_key(output)
  if not key then
    return nil, string.format(_("unexpected answer from dt-deconvolve key: %s"), output)
  end
  return key
end

-- The cached result for `key`, copied to `output`: its path, or nil on a miss (a lookup that
-- fails is one: the job computes the result).
local function cache_lookup(key, output)
  local answer = command_output(logic.lookup_args(key, output))
  if not answer then
    return nil
  end
  local kind, path = logic.parse_lookup(answer)
  if kind == "hit" and path == output and file_exists(path) then
    return path
  end
  return nil
end

-- A message on darktable's screen: one line, whatever the names it quotes hold (a line break,
-- an escape, bytes that are not UTF-8, for which GTK would drop the whole message).
local function toast(text)
  dt.print(logic.one_line(text))
end

-- Tell the user how sure the engine is of the blur it found and what it did about it (a message
-- and a tag on the result), and put a picture of the kernel beside the result. The blur comes
-- from the cache with the kernel's picture, or, when the cache could not keep them, from the job.
-- Returns the blur (nil for a kernel given, not estimated).
local function show_blur(batch, result, key, path)
  local blur, found
  local kernel = logic.kernel_path(path)
  -- (the name was free when the result's was chosen; a file made there since is not replaced)
  local free = not (file_exists(kernel) or is_link(kernel))
  if key then
    local where
    blur, found, where = logic.parse_kernel(command_output(logic.kernel_args(key,
      free and kernel or temp_path("kernel", ".png"))))
    found = found == "hit" and where == kernel and found or nil -- only the picture asked for
  end
  blur = blur or batch.blur
  if not blur then -- the kernel was given, not estimated
    return
  end
  local line = string.format(_("blur confidence %.2f: %s"), blur.confidence, blur.reason)
  if found == "hit" then
    line = line .. string.format(_(" (kernel: %s)"), kernel)
  elseif not free then
    line = line .. string.format(_(" (no kernel picture: %s was made meanwhile)"), kernel)
  else
    line = line .. _(" (no kernel picture: the cache could not keep the kernel)")
  end
  toast(line)
  log(path .. ": " .. line)
  dt.tags.attach(dt.tags.create(logic.blur_tag(blur)), result)
  return blur
end

-- Submit an export and wait, following its progress; returns the result's path, or nil and the
-- reason (nil, nil when cancelled).
local function deblur_export(batch, export, output, key, settings, index)
  local done_path
  local code, error_text = run_command(logic.submit_args(export, output, key, settings), function(line)
    local message = logic.parse_line(line)
    if message == nil then
      return
    elseif message.kind == "worker" then -- this submit started it: ours to stop on exit
      state.ours = message.identity
    elseif message.kind == "job" then
      batch.worker_job = message.id
      if batch.cancelled then
        run_command({ "cancel", message.id })
      end
    elseif message.kind == "progress" then
      set_progress(batch, logic.batch_fraction(index, #batch.images,
        EXPORT_SHARE + JOB_SHARE * message.fraction))
    elseif message.kind == "blur" then
      batch.blur = message
    elseif message.kind == "done" then
      done_path = message.path
    end
  end)
  batch.worker_job = nil
  if code == logic.EXIT.OK and done_path == output then -- even when cancelled too late: the
    return output -- caller removes it (only ever the output it asked for)
  elseif code == logic.EXIT.OK then
    return nil, string.format(_("unexpected answer from dt-deconvolve submit for %s"), output)
  elseif batch.cancelled then
    return nil, nil
  elseif code == logic.EXIT.CANCELLED then
    return nil, _("the job was cancelled outside darktable (another client, or the worker stopped)")
  end
  return nil, logic.error_reason(error_text, string.format(_("dt-deconvolve failed (exit %d)"), code))
end

local function copy_metadata(original, result, settings)
  local names = {}
  for _, tag in ipairs(dt.tags.get_tags(original)) do
    names[#names + 1] = tag.name
  end
  for _, name in ipairs(logic.copyable_tags(names)) do
    dt.tags.attach(dt.tags.create(name), result)
  end
  result.rating = original.rating
  for _, colour in ipairs(COLOUR_LABELS) do
    result[colour] = original[colour]
  end
  for _, field in ipairs(TEXT_METADATA) do
    pcall(function()
      result[field] = original[field]
    end)
  end
  for _, name in ipairs(logic.result_tags(settings)) do
    dt.tags.attach(dt.tags.create(name), result)
  end
end

-- Bring a result into the library beside its original, with the original's look when it was
-- deblurred in scene light (`edit`, from roundtrip.split_edit), and the blur it was deblurred
-- with (`show_blur`); the settings tag comes last: it marks a result whose metadata is complete.
-- Returns the imported picture, or nil, the reason and whether the library holds that file.
local function import_result(batch, original, path, job, edit)
  if not file_exists(path) then -- importing a missing file terminates darktable 4.2
    return nil, string.format(_("the result %s is missing"), path)
  end
  if not written_file(path) then
    return nil, string.format(_("the result %s is not a regular file: it is not imported"), path)
  end
  -- (by its name in the original's film roll: a count of the library's pictures is changed by
  -- darktable's own background jobs too)
  local known = library_names(original)[path:match("[^/]*$")] == true
  local ok, result = pcall(dt.database.import, path)
  if not ok or not result then
    return nil, string.format(_("darktable could not import %s"), path)
  end
  if result.id == original.id or known then -- a picture already in the library
    return nil, string.format(_("the result %s is a picture darktable knows already"), path), true
  end
  local finished, problem = pcall(function()
    result:group_with(original) -- joins the original's group; its leader stays the leader
    if edit then
      roundtrip.apply_look(result, edit)
    end
    job.blur = show_blur(batch, result, job.key, path)
    copy_metadata(original, result, job.settings)
  end)
  if not finished then -- (a half-made result, without its look or its tags, is none)
    if pcall(dt.database.delete, result) then
      os.remove(path .. ".xmp") -- the sidecar darktable wrote as it imported it (a free name)
    end
    return nil, string.format(_("the result %s could not be finished: %s"), path, tostring(problem))
  end
  return result
end

-- Export the image, then take the result from the cache or the worker. The key is taken
-- again after the export when it may have changed: without a sidecar it is the hash of the
-- exported pixels, and an export writes a picture's first edit into its sidecar. A sidecar
-- that held an edit and changed meanwhile was edited during the export, which holds one of
-- the two edits: the key is then the exported pixels' hash, never the new edit's (a result
-- cached under it would be served for the new edit). Returns the result's path and "cached" |
-- "done", or nil and the reason (nil, nil: cancelled).
local function export_and_deblur(batch, image, job)
  local export = temp_path("export-" .. image.id, ".tif")
  local exported
  if job.edit then
    exported = roundtrip.export_scene(dt, image, job.edit, export, export_image)
  else
    exported = export_image(image, export)
  end
  if not exported then
    os.remove(export)
    return nil, _("darktable could not export the image")
  end
  set_progress(batch, logic.batch_fraction(job.index, #batch.images, EXPORT_SHARE))
  if job.settings.preview then -- (its size as exported, crop and all: the library's is uncropped)
    job.settings.scale = logic.preview_scale(files.tiff_size(export))
  end
  local key, reason = job.key, nil
  if not job.identity.sidecar then
    key, reason = cache_key(export, job.identity, job.settings)
  elseif not key or read_text(job.identity.sidecar) ~= job.sidecar_text then
    if scene.edit_of(job.sidecar_text) then -- (edited during the export)
      key, reason = cache_key(export, { duplicate = job.identity.duplicate }, job.settings)
    else -- (the export wrote the picture's first edit)
      key, reason = cache_key(job.original, job.identity, job.settings)
    end
  end
  local result, outcome
  if key and key ~= job.key then
    result, outcome = cache_lookup(key, job.output), "cached"
  end
  if key and not result and not batch.cancelled then
    result, reason = deblur_export(batch, export, job.output, key, job.settings, job.index)
    outcome = "done"
  end
  job.key = key -- the key the result is cached under
  os.remove(export)
  if result then
    return result, outcome
  end
  return nil, reason and logic.replace_plain(reason, export, job.original) -- the user's picture
end

-- A result the commands handed over (`DONE`, `hit`) that cannot go into the library (a link
-- or a folder at its name is never touched).
local function remove_result(path)
  if written_file(path) then
    os.remove(path)
  end
end

-- Whether a picture's sidecar holds the edit the library holds: darktable rewrites it at each
-- change unless its preference *write sidecar file for each image* is "never", and then a
-- sidecar on disk may hold an older edit (one copied in with the pictures, or written before
-- the setting changed): the key is then made from the exported pixels.
local function sidecars_follow_edits()
  return roundtrip.writes_sidecars(dt)
end

-- One picture's job: its settings (the run's, its own copy), its original, what names its
-- edit (sidecar, duplicate) and the free name of its result (nil when none is).
local function new_job(batch, image, index, edit)
  local settings = {}
  for name, value in pairs(batch.settings) do
    settings[name] = value
  end
  settings.scene = edit ~= nil
  return {
    index = index,
    edit = edit,
    settings = settings,
    original = image.path .. "/" .. image.filename,
    identity = {
      sidecar = sidecars_follow_edits() and regular_file(image.sidecar) and image.sidecar or nil,
      duplicate = image.duplicate_index,
    },
    output = logic.output_path(image.path, image.filename, output_suffix(), taken_beside(image)),
  }
end

-- Why `image` cannot be deconvolved where it is (its folder or its file missing, its folder
-- read-only: no result can be written beside it), or nil.
local function folder_refusal(image)
  if not passes(image.path, "-d") then
    if #image.path >= DARKTABLE_PATH_MAX then -- (darktable 4.2 cuts a folder's path there)
      return string.format(_("its folder's path is longer than darktable keeps (%d bytes)"),
        DARKTABLE_PATH_MAX)
    end
    return _("its folder is missing (moved or deleted?)")
  end
  if not file_exists(image.path .. "/" .. image.filename) then -- (darktable would not export it)
    return _("its file is missing (moved or deleted?)")
  end
  if not writable_folder(image.path) then
    return _("its folder is read-only: the result cannot be written beside it")
  end
  return nil
end

--[[ Deconvolve one image. The key names the original's edits (its sidecar), the settings and
     the export: a cached result is taken without exporting. `edit` (from roundtrip.split_edit)
     when it goes through scene light. Returns "done" | "cached" | "cancelled", or nil and the
     reason. ]]
local function deconvolve_image(batch, image, index, edit)
  local job = new_job(batch, image, index, edit)
  local settings = job.settings
  if not job.output then
    return nil, _("no name is free for the result beside the original (too long, or all taken)")
  end
  local refusal = folder_refusal(image)
  if refusal then
    return nil, refusal
  end
  local result, outcome, reason
  batch.blur = nil
  if job.identity.sidecar and edit and edit.sidecar_text then
    -- In scene light the export holds the edit the split read, whatever the photographer does
    -- meanwhile: the key is made from that edit's copy (an edit made as the run began was keyed
    -- with the old pixels: a helper's attack, engine 0.3.54).
    local copy = temp_path("sidecar-" .. image.id, ".xmp")
    if files.write(copy, edit.sidecar_text) then
      job.identity.sidecar, edit.sidecar_copy = copy, copy
    end
  elseif edit and edit.scene and not edit.sidecar_text then
    job.identity.sidecar = nil -- (one that does not describe the history: the export's pixels key)
  end
  if job.identity.sidecar then
    -- a sidecar the key cannot read yet is no failure: the export writes it, the key follows
    job.sidecar_text = read_text(job.identity.sidecar)
    job.key = cache_key(job.original, job.identity, settings)
    if job.key then
      result, outcome = cache_lookup(job.key, job.output), "cached"
    end
  end
  if not result and not batch.cancelled then
    result, outcome = export_and_deblur(batch, image, job)
    if not result then
      reason, outcome = outcome, nil -- without a result, the second value is the reason
    end
  end
  if batch.cancelled then -- a result that arrived as the user cancelled stays out of the library
    if result then
      remove_result(result)
    end
    return "cancelled"
  end
  if not result then -- what a failed job wrote, its worker removed (`--no-clobber`): a file at
    return nil, reason -- the name now is another program's, made meanwhile (exit 4 or not)
  end
  local imported, known
  imported, reason, known = import_result(batch, image, result, job, edit)
  if not imported then
    if not known then -- (a file the library holds is never removed)
      remove_result(result)
    end
    return nil, reason
  end
  -- (the third value: whether the engine left the picture as it was, having found no blur)
  return outcome, nil, job.blur ~= nil and job.blur.kernel == "none"
end

-- Deconvolve one image (see deconvolve_image); in scene light unless the preferences say
-- otherwise, through temporary styles that are deleted whatever happens.
local function process_image(batch, image, index)
  local edit
  if scene_referred() then
    -- unique across sessions (the private folder's random name): a crashed session's
    -- leftovers never share a name with a new style
    local name = temp_path("edit-" .. image.id, ""):match("[^/]+/[^/]+$"):gsub("/", "-")
    local function read_sidecar()
      return sidecars_follow_edits() and regular_file(image.sidecar) and read_text(image.sidecar)
        or nil
    end
    local ok, made, reason, detail = pcall(roundtrip.split_edit, dt, image, private_folder(), name,
      read_sidecar)
    if not ok or not made then -- (a reason of split_edit's is a message id, `detail` its %s)
      local why = ok and _(tostring(reason)) or tostring(made)
      if ok and detail then
        why = string.format(why, detail)
      end
      return nil, string.format(_("cannot split the edit at its tone mapper: %s"), why)
    end
    edit = made.scene and made or nil -- (no history yet: the picture as darktable renders it)
  end
  local ok, outcome, reason, unchanged = pcall(deconvolve_image, batch, image, index, edit)
  if edit then
    roundtrip.release(dt, edit)
    if edit.sidecar_copy then
      os.remove(edit.sidecar_copy)
    end
  end
  if not ok then
    error(outcome, 0)
  end
  return outcome, reason, unchanged
end

-- What became of a run's pictures; a cancelled run says what it did before (its results stay).
local function summary(counts, count)
  local line = string.format(_("deconvolved %d of %d images (%d from the cache)"),
    counts.done + counts.cached, count, counts.cached)
  if counts.unchanged == 1 then -- (their results are copies: the engine found no blur to remove)
    line = line .. _("; 1 came back as it was: no blur to remove was found")
  elseif counts.unchanged > 1 then
    line = line .. string.format(_("; %d came back as they were: no blur to remove was found"),
      counts.unchanged)
  end
  if counts.cancelled > 0 then
    line = string.format(_("deconvolution cancelled: %s"), line)
  end
  if counts.failed > 0 then
    line = line .. string.format(_("; %d failed: darktable's log says why"), counts.failed)
  end
  return line
end

-- A run's end, whatever ended it: its darktable job closed, its temporary folder removed, and
-- the plug-in free for a new run.
local function end_run(batch)
  close_job(batch)
  remove_private_folder()
  state.batch = nil
end

-- The work of one run, in its own darktable job.
local function run_batch(batch)
  local images = batch.images
  batch.job = dt.gui.create_job(_("deconvolve"), true, function()
    cancel_batch(batch)
  end)
  batch.job_closed = false
  local counts = { done = 0, cached = 0, cancelled = 0, failed = 0, unchanged = 0 }
  for index, image in ipairs(images) do
    if batch.cancelled then
      counts.cancelled = counts.cancelled + 1
      break
    end
    set_progress(batch, logic.batch_fraction(index, #images, 0))
    local ok, outcome, reason, unchanged = pcall(process_image, batch, image, index)
    if not ok then -- a bug or an API surprise: report it, keep darktable running
      outcome, reason = nil, tostring(outcome)
    end
    if outcome then
      counts[outcome] = counts[outcome] + 1
      counts.unchanged = counts.unchanged + (unchanged and 1 or 0)
    else
      counts.failed = counts.failed + 1
      log(image.filename .. ": " .. tostring(reason), dt.print_error)
      toast(string.format(_("deconvolve failed for %s: %s"), image.filename, reason))
    end
  end
  end_run(batch)
  if counts.failed == 0 or #images > 1 then -- (one failed picture: its own message stays)
    toast(summary(counts, #images))
  end
end

-- A run, released whatever happens: an error (a bug, an API surprise) said in words, never a
-- run left claimed ("a deconvolution is already running" until darktable quits).
local function deconvolve_images(batch)
  local ok, problem = pcall(run_batch, batch)
  if not ok then
    end_run(batch)
    log(tostring(problem), dt.print_error)
    toast(string.format(_("deconvolve failed: %s"), tostring(problem)))
  end
end

-- The button and the shortcut: check, then start a run in the background.
local function start()
  if state.batch then
    toast(_("a deconvolution is already running"))
    return
  end
  -- Claimed before anything else: darktable lets go of the Lua lock inside GUI calls (the
  -- selection, the sliders), and a second press meanwhile started a second run of the same
  -- pictures. `job_closed` until deconvolve_images gives the run its darktable job.
  local batch = { images = {}, job_closed = true }
  state.batch = batch
  local command = command_path()
  if not is_executable(command) then
    state.batch = nil
    toast(string.format(
      _("dt-deconvolve not found at %s: install it with install.sh from dt-deconvolve, or set its path in preferences > lua options"),
      command))
    return
  end
  local ok, problem = pcall(function()
    for _, image in ipairs(dt.gui.selection()) do
      batch.images[#batch.images + 1] = image
    end
    if #batch.images > 0 then
      batch.settings = current_settings()
      dt.control.dispatch(deconvolve_images, batch)
    end
  end)
  if not ok or #batch.images == 0 then
    state.batch = nil
    toast(ok and _("select the images to deconvolve first")
      or string.format(_("deconvolve failed: %s"), tostring(problem)))
  end
end

local function cancel_current()
  if state.batch then
    cancel_batch(state.batch)
  end
end

-- darktable quits: drop the cache's temporary entries (and results, unless kept); stop the
-- worker a submit of this plug-in started, if that one still runs.
local function clean_up()
  cancel_current()
  remove_private_folder()
  if not state.used or not is_executable(command_path()) then
    return
  end
  local function quietly(args)
    local line = logic.command_line(command_path(), args)
    os.execute(logic.time_limited(line, logic.EXIT_LIMIT) .. " >/dev/null 2>&1")
  end
  quietly(logic.clean_args(dt.preferences.read(MODULE, "keep_results", "bool"),
    dt.configuration.tmp_dir))
  if state.ours and answering_now() == state.ours then -- (not one started since by another)
    quietly({ "shutdown" })
  end
  state.ours = nil
  state.used = false
end

----------------------------------------------------------------------------------------------
-- GUI: preferences, panel, shortcuts

local function register_preferences()
  dt.preferences.register(MODULE, "command", "file",
    _("deconvolve: dt-deconvolve command"),
    string.format(_("where the dt-deconvolve command is; empty: the one on your PATH, else ~/%s, where install.sh puts it"),
      logic.INSTALLED_COMMAND),
    "")
  dt.preferences.register(MODULE, "keep_results", "bool",
    _("deconvolve: keep results between sessions"),
    _("keep deconvolved results in dt-deconvolve's cache after darktable quits, so that a later run with the same edits and settings is instant"),
    true)
  dt.preferences.register(MODULE, "finished_export", "bool",
    _("deconvolve: deblur the finished picture"),
    _("off (recommended): deblur in the scene's linear light, before the tone mapper, and give the result the original's tone mapper and the modules after it; on: deblur the picture as exported with all its edits"),
    false)
  dt.preferences.register(MODULE, "suffix", "string",
    _("deconvolve: output suffix"),
    _("added to the file name of a result: IMG_1234_deconv.tif"),
    logic.DEFAULT_SUFFIX)
end

-- A slider; its value is set once its range is, since darktable applies a constructor's fields
-- in no fixed order and GTK would clamp a value given before the range.
local function slider(label, tooltip, range, step, digits, value)
  local widget = dt.new_widget("slider")({
    label = label,
    tooltip = tooltip,
    soft_min = range.min,
    soft_max = range.max,
    hard_min = range.min,
    hard_max = range.max,
    step = step,
    digits = digits,
  })
  widget.value = value
  return widget
end

-- A drop-down list of `entries`, showing entry number `selected`.
local function choice(label, tooltip, entries, selected)
  local widget = dt.new_widget("combobox")({ label = label, tooltip = tooltip, table.unpack(entries) })
  widget.selected = selected
  return widget
end

local function build_panel()
  local saved = saved_settings()
  local w = state.widgets
  w.blur_mode = choice(_("blur size"),
    _("automatic: the engine finds the blur's size itself (a few seconds more); or the largest blur set on the slider below, which a varying run always uses"),
    { _("automatic"), _("the slider's") }, saved_choice("blur_mode"))
  w.blur = slider(_("largest blur"),
    _("size in pixels of the largest blur to remove (odd), when the blur size is the slider's or the blur varies: a little more than the longest streak or the widest halo"),
    logic.BLUR, 2, 0, saved.blur)
  w.tolerance = slider(_("tolerance"),
    _("how much noise may start to show before sharpening stops, in percent: lower is cleaner and softer, higher crisper and grainier"),
    logic.TOLERANCE, 0.5, 1, saved.tolerance)
  w.priority = slider(_("priority"),
    _("-1 favours a clean result (denoise), +1 favours detail (deblur)"),
    logic.PRIORITY, 0.1, 1, saved.priority)
  w.window = choice(_("sample window"),
    _("where the blur is measured: the most detailed part of the picture, or its centre"),
    { _("automatic"), _("centre") }, saved_choice("window"))
  w.blur_across = choice(_("blur across the frame"),
    _("the same everywhere, or varying (a camera that turned: longer blur in the corners); varying learns a blur for each part of the picture, takes longer, and can harm a picture that is sharp"),
    { _("the same"), _("varying") }, saved_choice("blur_across"))
  w.output_size = choice(_("output size"),
    string.format(_("full size, or a quick preview at most %d pixels on its longest side"),
      logic.PREVIEW_SIDE),
    { _("full"), _("preview") }, saved_choice("output_size"))
  w.button = dt.new_widget("button")({
    label = _("deconvolve"),
    tooltip = _("deconvolve the selected images; the results are grouped with them"),
    clicked_callback = start,
  })
  return dt.new_widget("box")({
    orientation = "vertical",
    w.blur_mode,
    w.blur,
    w.tolerance,
    w.priority,
    w.window,
    w.blur_across,
    w.output_size,
    w.button,
  })
end

local function register_events()
  if state.events_registered then
    return
  end
  dt.register_event(MODULE, "shortcut", start, _("deconvolve selected images"))
  dt.register_event(MODULE .. "_cancel", "shortcut", cancel_current, _("cancel deconvolution"))
  dt.register_event(MODULE, "exit", clean_up)
  state.events_registered = true
end

local function destroy_events()
  if not state.events_registered then
    return
  end
  dt.destroy_event(MODULE, "shortcut")
  dt.destroy_event(MODULE .. "_cancel", "shortcut")
  dt.destroy_event(MODULE, "exit")
  state.events_registered = false
end

local function install_gui()
  -- (GUI calls let go of the Lua lock; a script switched off before this queued call ran stays off)
  if state.gui_installed or state.gui_installing or state.switched_off then
    return
  end
  state.gui_installing = true
  pcall(roundtrip.remove_leftovers, dt) -- of a session that did not end
  register_preferences()
  dt.register_lib(MODULE, _("deconvolve"), true, false,
    { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 100 } },
    build_panel(), nil, nil)
  state.gui_installed = true -- (only now: `destroy` and `restart` reach for the panel)
  state.gui_installing = false
  register_events()
end

-- Register the GUI pieces once lighttable is shown, never while luarc is still loading: a
-- GTK-bound call there can freeze darktable 4.2 at start-up.
local function schedule_gui()
  if dt.gui.current_view().id == "lighttable" then
    dt.control.dispatch(install_gui)
  elseif not state.waiting_for_lighttable then
    dt.register_event(MODULE, "view-changed", function(_, _, new_view)
      if new_view.id == "lighttable" then
        install_gui()
      end
    end)
    state.waiting_for_lighttable = true
  end
end

----------------------------------------------------------------------------------------------
-- script_manager

local function destroy()
  state.switched_off = true
  clean_up()
  destroy_events()
  if state.waiting_for_lighttable then -- (switched off before lighttable was shown: it stays off)
    dt.destroy_event(MODULE, "view-changed")
    state.waiting_for_lighttable = false
  end
  if state.gui_installed then
    dt.gui.libs[MODULE].visible = false
  end
end

local function restart()
  state.switched_off = false
  if state.gui_installed then
    register_events()
    dt.gui.libs[MODULE].visible = true
  else
    schedule_gui()
  end
end

if dt.configuration.api_version_major < MIN_API_MAJOR then
  toast(string.format(_("deconvolve needs darktable 4.2 or newer (Lua API %d)"), MIN_API_MAJOR))
elseif dt.configuration.has_gui then
  schedule_gui()
end

-- script_manager's interface (destroy_method "hide": a lib cannot be unregistered, only hidden)
script_data.destroy = destroy
script_data.destroy_method = "hide"
script_data.restart = restart
script_data.show = restart

return script_data
