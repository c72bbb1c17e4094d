-- A whole run of the plug-in against the stub darktable and a fake `dt-deconvolve` (a shell
-- script speaking the client's contract): export, key, lookup, submit, import, group, copy.
local check = require "harness"
local stub = require "stub_darktable"
local files = require "lib/deconvolve/files"
local test, eq, truthy = check.test, check.eq, check.truthy

local FAKE = [=[#!/bin/sh
# key: a hash of the arguments; cache: files named after keys; submit: copies its input.
# Paths are printed as the real command prints them: one field, %XX for odd bytes.
here=$(dirname "$0")
echo "$*" >>"$here/calls.log"
field() { printf %s "$1" | sed 's/%/%25/g; s/ /%20/g'; }
case " $* " in # --no-clobber: a file at OUTPUT is kept and the command fails, as the real one
  *" -o "*" --no-clobber "*)
    output=$(printf '%s\n' "$@" | sed -n '/^-o$/{n;p;q}')
    if [ -e "$output" ]; then echo "dt-deconvolve: error: a file is at this name already, kept as it is: $output" >&2; exit 4; fi ;;
esac
case $1 in
  ping) # none answers unless a test says: worker-up holds the pid of the one that does
    started=$(cat "$here/worker-started" 2>/dev/null || echo 7) # (its start: clock ticks)
    if [ -f "$here/worker-up" ]; then echo "{\"version\": \"0\", \"pid\": $(cat "$here/worker-up"), \"started\": $started}"; exit 0; fi
    echo "dt-deconvolve: error: no worker answers" >&2; exit 1 ;;
  shutdown) rm -f "$here/worker-up" ;;
  key)
    if [ -f "$here/keyfail" ]; then echo "dt-deconvolve: error: $2 is not a TIFF file" >&2; exit 1; fi
    echo "$*" | cksum | cut -d' ' -f1 ;;
  cache)
    if [ "$2" = lookup ]; then
      if [ -f "$here/cache/$3" ]; then cp "$here/cache/$3" "$5"; echo "hit $(field "$5")"; else echo miss; fi
    fi
    if [ "$2" = kernel ] && [ -f "$here/kernels" ]; then # (only where a test asks for it)
      if [ ! -f "$here/cache/$3" ]; then echo miss
      elif [ -f "$here/no-blur" ]; then echo "BLUR 0.90 none no blur: the picture is left as it is"; printf png >"$5"; echo "hit $(field "$5")"
      else echo "BLUR 0.90 free-form a 9 px blur"; printf png >"$5"; echo "hit $(field "$5")"; fi
    fi ;;
  submit)
    if [ -f "$here/fail" ] || [ -f "$here/fail-$(basename "$4")" ]; then
      echo "JOB 7"; echo "dt-deconvolve: error: out of memory" >&2; exit 1
    fi
    if [ -f "$here/elsewhere" ]; then echo "JOB 8"; exit 3; fi
    if [ ! -f "$here/worker-up" ]; then echo 4242 >"$here/worker-up"; echo "WORKER 4242 7"; fi # (started)
    stat -c %a "$(dirname "$2")" >"$here/export-folder-mode"
    echo "JOB 42"; echo "PROGRESS 0.5 deblurring"
    if [ -f "$here/link" ]; then ln -s "$(dirname "$4")/a.tif" "$4"; echo "DONE $(field "$4")"; exit 0; fi
    mkdir -p "$here/cache"; cp "$2" "$here/cache/$7"; cp "$2" "$4"
    if [ -f "$here/race" ]; then # another program makes a file at the name during the job
      rm "$4"; echo theirs >"$4"; echo "dt-deconvolve: error: a file is at this name already, kept as it is: $4" >&2; exit 4
    fi
    if [ -f "$here/user-stops" ]; then rm "$here/user-stops" "$here/worker-up"; fi # (after the job)
    if [ -f "$here/late" ]; then printf '\033[31mdt-deconvolve: error: \033[0mdisk \r\n' >&2; exit 1; fi
    if [ -f "$here/forge" ]; then echo "DONE $(cat "$here/forge")"; else echo "DONE $(field "$4")"; fi ;;
esac
]=]

local function shell(command)
  assert(os.execute(command), command)
end

local read = files.read

-- A folder with the fake command, darktable's temporary folder and a picture folder holding
-- a.tif and b.tif with their sidecars.
local function workspace()
  local dir = os.tmpname()
  os.remove(dir)
  shell("mkdir -p '" .. dir .. "/tmp' '" .. dir .. "/my pictures'")
  local fake = io.open(dir .. "/dt-deconvolve", "w")
  fake:write(FAKE)
  fake:close()
  shell("chmod +x '" .. dir .. "/dt-deconvolve'")
  for _, name in ipairs({ "a.tif", "b.tif", "a.tif.xmp", "b.tif.xmp" }) do
    shell("echo " .. name .. " > '" .. dir .. "/my pictures/" .. name .. "'")
  end
  return dir
end

local function remove(dir)
  shell("rm -rf '" .. dir .. "'")
end

local function leftovers(dir)
  local pipe = io.popen("ls '" .. dir .. "/tmp'")
  local names = pipe:read("a")
  pipe:close()
  return names
end

-- The plug-in loaded with its GUI installed, pointed at the fake command. It deblurs the
-- finished picture: the scene-referred round trip needs darktable's styles (test_darktable.py).
local function plugin(dir, preferences)
  local conf = { ["deconvolve/command"] = dir .. "/dt-deconvolve", ["deconvolve/blur_size"] = 9,
    ["deconvolve/finished_export"] = true }
  for name, value in pairs(preferences or {}) do
    conf[name] = value
  end
  local rec = stub.new({ tmp_dir = dir .. "/tmp", conf = conf })
  rec.data = stub.load_plugin()
  rec.run_dispatched()
  return rec
end

-- A run that ended with `toast` and left nothing behind: no import, no temporary file.
local function expect_nothing_left(rec, dir, toast)
  eq(rec.toasts, { toast })
  eq(#rec.imported, 0)
  eq(leftovers(dir), "")
  remove(dir)
end

local function press(rec, images)
  rec.dt.gui.selection = function()
    return images
  end
  rec.events["deconvolve/shortcut"].fn("shortcut", "deconvolve selected images")
end

-- The pictures of "my pictures" called `names`, each in a run of its own (a list of names: one
-- run of them all), `before(index)` (if given) called before each run.
local function run_each(rec, dir, names, before)
  for index, name in ipairs(names) do
    if before then
      before(index)
    end
    local images = {}
    for _, each in ipairs(type(name) == "table" and name or { name }) do
      images[#images + 1] = stub.image(rec, dir .. "/my pictures/" .. each)
    end
    press(rec, images)
    rec.run_dispatched()
  end
end

-- One picture of "my pictures" (a.tif unless named) deconvolved, the fake command switched by
-- the file `switch` in the workspace `dir` (a new one unless given): "fail", "late", "link",
-- "elsewhere", "keyfail"; `preferences` as `plugin` takes them. Returns the recorder, the
-- workspace and the picture.
local function run_one(switch, filename, dir, preferences)
  dir = dir or workspace()
  if switch then
    shell("touch '" .. dir .. "/" .. switch .. "'")
  end
  local rec = plugin(dir, preferences)
  local image = stub.image(rec, dir .. "/my pictures/" .. (filename or "a.tif"))
  press(rec, { image })
  rec.run_dispatched()
  return rec, dir, image
end

-- The job's cancel button, pressed as soon as the worker has the job.
local function cancel_once_submitted(rec, dir)
  rec.on_read = function()
    if (read(dir .. "/calls.log") or ""):match("\nsubmit ") and rec.jobs[1].valid then
      rec.jobs[1].cancel(rec.jobs[1])
    end
  end
end

test("a run: exported once, deblurred, imported beside the original, grouped, tagged", function()
  local dir = workspace()
  local rec = plugin(dir)
  local original = stub.image(rec, dir .. "/my pictures/a.tif")
  original.rating, original.red, original.title = 4, true, "market"
  original.tags = { { name = "darktable|format|tif" }, { name = "people|alice" } }
  press(rec, { original })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolved 1 of 1 images (0 from the cache)" })
  local result = rec.imported[1]
  eq(result.path .. "/" .. result.filename, dir .. "/my pictures/a_deconv.tif")
  eq(read(dir .. "/my pictures/a_deconv.tif"), "pixels of a.tif", "the worker's output")
  truthy(result.group_leader == original, "grouped under the original")
  truthy(original.group_leader == original, "the original still leads")
  local names = {}
  for _, tag in ipairs(result.tags) do
    names[#names + 1] = tag.name
  end
  eq(names, { "people|alice", "dt-deconvolve|blur auto|tolerance 5" }, "the blur size found")
  eq({ result.rating, result.red, result.title }, { 4, true, "market" })
  eq(#rec.exports, 1)
  eq(rec.exports[1].bpp, 32, "a 32-bit float export")
  eq(leftovers(dir), "", "temporary files removed")
  eq(rec.jobs[1].valid, false, "the job closed")

  -- Again: the cache has it; nothing is exported, the result gets the next free name.
  press(rec, { original })
  rec.run_dispatched()
  eq(rec.toasts[2], "deconvolved 1 of 1 images (1 from the cache)")
  eq(#rec.exports, 1, "no second export")
  eq(rec.imported[2].filename, "a_deconv_1.tif")
  truthy(not read(dir .. "/calls.log"):match("submit[^\n]*a_deconv_1"), "no second job")

  -- The export went to a folder of the run's own, private and unpredictable (a link planted in
  -- a shared /tmp at a predictable name would have been written through), gone after the run.
  -- Named after darktable's process id, so that a crash's folder is removed at the next exit.
  truthy(read(dir .. "/calls.log"):match("\nsubmit [^\n]*/tmp/dt%-deconvolve%-[1-9]%d*%-%w+/export%-"))
  truthy(read(dir .. "/calls.log"):match("\nsubmit [^\n]* %-%-blur auto "), "the engine finds the size")
  eq(read(dir .. "/export-folder-mode"), "700\n")
  eq(leftovers(dir), "")

  -- Quitting: the cache's on-exit cleaning, and the worker this plug-in started is stopped.
  rec.events["deconvolve/exit"].fn("exit")
  local calls = read(dir .. "/calls.log")
  truthy(calls:match("\ncache clean %-%-on%-exit %-%-exports%-dir=[^\n]*/tmp %-%-keep%-results\n"), calls)
  truthy(calls:match("\nshutdown\n"), "shutdown")
  remove(dir)
end)

-- The head of a TIFF `width` x `height` as darktable writes it (classic, little-endian; the
-- height a SHORT, the width a LONG) and its first IFD, at the end as libtiff puts it.
local function tiff_head(width, height)
  return string.pack("<c2I2I4", "II", 42, 16) .. "pixels.."
    .. string.pack("<I2", 2) .. string.pack("<I2I2I4I4", 256, 4, 1, width)
    .. string.pack("<I2I2I4I2I2", 257, 3, 1, height, 0) .. string.pack("<I4", 0)
end

test("a preview: 1600 px on the long side of the picture as exported, crop and all", function()
  -- (its scale was the library's uncropped size's: a cropped picture's preview came out far
  -- smaller than 1600 px)
  eq({ files.tiff_size("/nonexistent") }, {})
  local dir = workspace()
  local rec = plugin(dir, { ["deconvolve/output_size"] = "preview" })
  rec.on_export = function(_, path)
    files.write(path, tiff_head(4000, 2000)) -- (a 6000 x 4000 picture, cropped)
  end
  local original = stub.image(rec, dir .. "/my pictures/a.tif")
  original.width, original.height = 6000, 4000
  eq({ files.tiff_size(dir .. "/my pictures/a.tif") }, {}, "no TIFF")
  press(rec, { original })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolved 1 of 1 images (0 from the cache)" })
  local calls = "\n" .. read(dir .. "/calls.log") -- (each call a line)
  truthy(calls:match("\nsubmit [^\n]* %-%-scale 0%.4 "), calls)
  truthy(calls:match("\nkey [^\n]* max=1600 ") and not calls:match("\nkey [^\n]*%-%-scale"),
    "the key names a preview by its export")
  local tags = {}
  for _, tag in ipairs(rec.imported[1].tags) do
    tags[#tags + 1] = tag.name
  end
  eq(tags[#tags], "dt-deconvolve|preview")
  remove(dir)
end)

test("several images: one job, each result beside its own original", function()
  local dir = workspace()
  local rec = plugin(dir)
  local a = stub.image(rec, dir .. "/my pictures/a.tif")
  local b = stub.image(rec, dir .. "/my pictures/b.tif")
  press(rec, { a, b })
  rec.run_dispatched()
  eq(#rec.jobs, 1)
  eq(rec.toasts, { "deconvolved 2 of 2 images (0 from the cache)" })
  eq({ rec.imported[1].filename, rec.imported[2].filename }, { "a_deconv.tif", "b_deconv.tif" })
  truthy(rec.imported[2].group_leader == b, "b's result in b's group")
  remove(dir)
end)

test("one picture of several fails: its reason, then what became of all of them", function()
  -- (the failure's message was the last one shown when a later picture succeeded)
  local dir = workspace()
  shell("touch '" .. dir .. "/fail-a_deconv.tif'")
  local rec = plugin(dir)
  local pictures = dir .. "/my pictures/"
  press(rec, { stub.image(rec, pictures .. "a.tif"), stub.image(rec, pictures .. "b.tif") })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolve failed for a.tif: out of memory",
    "deconvolved 1 of 2 images (0 from the cache); 1 failed: darktable's log says why" })
  eq(#rec.imported, 1)
  remove(dir)
end)

test("a failure: the reason in a message, nothing imported, no export left", function()
  local rec, dir = run_one("fail", "b.tif")
  expect_nothing_left(rec, dir, "deconvolve failed for b.tif: out of memory")
end)

test("a read-only folder: refused before the export, in one message", function()
  local dir = workspace()
  local pictures = dir .. "/my pictures"
  shell("chmod 555 '" .. pictures .. "'")
  local probe = io.open(pictures .. "/probe", "w")
  if probe then -- a root that ignores permissions (pytest runs this file as an ordinary root)
    probe:close()
    print("skipped: this process may write into a read-only folder")
    shell("chmod 755 '" .. pictures .. "'")
    return remove(dir)
  end
  local rec = run_one(nil, nil, dir)
  shell("chmod 755 '" .. pictures .. "'")
  eq(#rec.exports, 0, "exports")
  eq(read(dir .. "/calls.log"), nil, "the command was asked nothing")
  expect_nothing_left(rec, dir,
    "deconvolve failed for a.tif: its folder is read-only: the result cannot be written beside it")
end)

test("a file moved or deleted: said so, not that darktable could not export it", function()
  local dir = workspace()
  local rec = plugin(dir)
  local image = stub.image(rec, dir .. "/my pictures/a.tif")
  os.remove(dir .. "/my pictures/a.tif")
  press(rec, { image })
  rec.run_dispatched()
  eq(#rec.exports, 0, "exports")
  expect_nothing_left(rec, dir, "deconvolve failed for a.tif: its file is missing (moved or deleted?)")
end)

test("a folder moved or deleted: said so, not read-only", function()
  local dir = workspace()
  local rec = plugin(dir)
  local image = stub.image(rec, dir .. "/my pictures/a.tif")
  shell("rm -rf '" .. dir .. "/my pictures'")
  press(rec, { image })
  rec.run_dispatched()
  eq(#rec.exports, 0, "exports")
  expect_nothing_left(rec, dir, "deconvolve failed for a.tif: its folder is missing (moved or deleted?)")
end)

test("a folder whose path darktable cut short: said so, not that it is missing", function()
  -- darktable 4.2 keeps 511 bytes of a picture's folder; a longer one reads as a folder that
  -- does not exist, which the message said until engine 0.3.53.
  local dir = workspace()
  local rec = plugin(dir)
  local cut = (dir .. "/my pictures/" .. string.rep("deep/", 120)):sub(1, 511)
  press(rec, { stub.image(rec, cut .. "/a.tif") })
  rec.run_dispatched()
  eq(#rec.exports, 0, "exports")
  expect_nothing_left(rec, dir,
    "deconvolve failed for a.tif: its folder's path is longer than darktable keeps (511 bytes)")
end)

test("cancelled during the job: the worker is told, nothing imported", function()
  local dir = workspace()
  local rec = plugin(dir)
  cancel_once_submitted(rec, dir)
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.run_dispatched()
  truthy(read(dir .. "/calls.log"):match("\ncancel 42\n"), "cancel sent to the worker")
  eq(read(dir .. "/my pictures/a_deconv.tif"), nil, "a late result is removed")
  expect_nothing_left(rec, dir, "deconvolution cancelled: deconvolved 0 of 1 images (0 from the cache)")
end)

test("cancelled before it began: no export, no command", function()
  local dir = workspace()
  local rec = plugin(dir)
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.events["deconvolve_cancel/shortcut"].fn("shortcut", "cancel deconvolution")
  rec.run_dispatched()
  eq(#rec.exports, 0)
  expect_nothing_left(rec, dir, "deconvolution cancelled: deconvolved 0 of 1 images (0 from the cache)")
end)

test("a FIFO where the result would go: skipped, never opened (the plug-in does not hang)", function()
  local dir = workspace()
  shell("mkfifo '" .. dir .. "/my pictures/a_deconv.tif'")
  local rec = plugin(dir)
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolved 1 of 1 images (0 from the cache)" })
  eq(rec.imported[1].filename, "a_deconv_1.tif")
  truthy(os.execute("test -p '" .. dir .. "/my pictures/a_deconv.tif'"), "the FIFO is untouched")
  remove(dir)
end)

test("a DONE line naming another file: not imported, not removed, the run fails", function()
  local dir = workspace()
  shell("echo precious > '" .. dir .. "/victim.tif'")
  shell("printf %s '" .. dir .. "/victim.tif' > '" .. dir .. "/forge'")
  local rec = plugin(dir)
  cancel_once_submitted(rec, dir) -- late: the plug-in removes the result it got, if any
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.run_dispatched()
  eq(#rec.imported, 0)
  eq(read(dir .. "/victim.tif"), "precious\n", "the named file is left alone")
  remove(dir)
end)

test("a link at the result's name: never imported, the original untouched", function()
  -- darktable's import follows a link: it returned the original, which was then tagged, grouped
  -- and given a look as if it were the result.
  local rec, dir, original = run_one("link")
  eq(#rec.imported, 0)
  eq(#original.tags, 0, "nothing attached to the original")
  truthy(rec.toasts[1]:match("is not a regular file: it is not imported"), rec.toasts[1])
  eq(read(dir .. "/my pictures/a.tif"), "a.tif\n")
  remove(dir)
end)

test("names beside an old result's sidecar or a user's kernel picture are not taken", function()
  local dir = workspace()
  shell("echo old > '" .. dir .. "/my pictures/a_deconv.tif.xmp'")
  shell("echo mine > '" .. dir .. "/my pictures/a_deconv_1.kernel.png'")
  shell("ln -s nowhere '" .. dir .. "/my pictures/a_deconv_2.tif'") -- a dangling link
  local rec = run_one(nil, nil, dir)
  eq(rec.imported[1].filename, "a_deconv_3.tif")
  eq(read(dir .. "/my pictures/a_deconv_1.kernel.png"), "mine\n")
  remove(dir)
end)

test("a failed job: the reason shown, a file at the result's name left to its owner", function()
  -- The worker removes what a failed `--no-clobber` job wrote; a file there after the failure
  -- was made by another program meanwhile (a helper's attack, engine 0.3.54: the plug-in
  -- removed it after any failure but exit 4, a killed executor's exit 1 among them).
  local rec, dir = run_one("late")
  eq(rec.toasts, { "deconvolve failed for a.tif: disk" }, "no escapes, no carriage return")
  truthy(read(dir .. "/my pictures/a_deconv.tif"), "the file at the name is left")
  eq(#rec.imported, 0, "nothing imported")
  remove(dir)
end)

test("a file made at the result's name during the job is kept (exit 4), not removed", function()
  local rec, dir = run_one("race")
  eq(#rec.toasts, 1)
  truthy(rec.toasts[1]:find("a file is at this name already, kept as it is", 1, true), rec.toasts[1])
  eq(read(dir .. "/my pictures/a_deconv.tif"), "theirs\n", "the other program's file is kept")
  eq(#rec.imported, 0, "nothing imported")
  remove(dir)
end)

test("a job cancelled outside darktable: a failure that says so", function()
  local rec, dir = run_one("elsewhere")
  eq(rec.toasts, { "deconvolve failed for a.tif: the job was cancelled outside darktable "
    .. "(another client, or the worker stopped)" })
  remove(dir)
end)

test("a name too long for a result beside it: a message, no endless search", function()
  local dir = workspace()
  local long = string.rep("x", 240) .. ".tif"
  shell("echo x > '" .. dir .. "/my pictures/" .. long .. "'")
  local rec = run_one(nil, long, dir)
  eq(#rec.imported, 0)
  truthy(rec.toasts[1]:match("no name is free for the result"), rec.toasts[1])
  remove(dir)
end)

test("a second press while the first gathers its pictures: refused, nothing lost", function()
  -- darktable lets go of the Lua lock in GUI calls: a double press started two runs of the
  -- same picture, and the second removed the result the first had imported.
  local dir = workspace()
  local rec = plugin(dir)
  local image = stub.image(rec, dir .. "/my pictures/a.tif")
  local again = true
  rec.dt.gui.selection = function()
    if again then
      again = false
      rec.events["deconvolve/shortcut"].fn("shortcut", "deconvolve selected images")
    end
    return { image }
  end
  rec.events["deconvolve/shortcut"].fn("shortcut", "deconvolve selected images")
  rec.run_dispatched()
  eq(rec.toasts[1], "a deconvolution is already running")
  eq(#rec.imported, 1)
  eq(read(dir .. "/my pictures/a_deconv.tif"), "pixels of a.tif", "the imported result is there")
  remove(dir)
end)

test("a name the library holds, its file deleted outside darktable, is not taken", function()
  -- (until engine 0.3.22 the result was written there, over the old entry's look, and refused)
  local dir = workspace()
  local rec = plugin(dir)
  local old = stub.image(rec, dir .. "/my pictures/a_deconv.tif") -- in the library, no file
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.run_dispatched()
  eq(rec.imported[1].filename, "a_deconv_1.tif")
  eq(read(dir .. "/my pictures/a_deconv.tif"), nil, "nothing written under the old entry")
  truthy(rec.imported[1] ~= old)
  remove(dir)
end)

test("a result the library took meanwhile (another import): refused, its file kept", function()
  local dir = workspace()
  local rec = plugin(dir)
  rec.on_read = function() -- while the job runs, the picture is imported by other means
    if read(dir .. "/my pictures/a_deconv.tif") then
      stub.image(rec, dir .. "/my pictures/a_deconv.tif")
      rec.on_read = nil
    end
  end
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.run_dispatched()
  truthy(rec.toasts[1]:match("is a picture darktable knows already"), rec.toasts[1])
  eq(read(dir .. "/my pictures/a_deconv.tif"), "pixels of a.tif", "a file the library holds stays")
  remove(dir)
end)

test("a picture removed from the library as the result is imported: still the result", function()
  -- Until engine 0.3.55 a result counted as a picture the library knew when the library's
  -- count did not grow: one removed by another job meanwhile made it so (left ungrouped).
  local dir = workspace()
  local rec = plugin(dir)
  local original = stub.image(rec, dir .. "/my pictures/a.tif")
  local other = stub.image(rec, dir .. "/my pictures/b.tif")
  rec.on_import = function()
    for index, image in ipairs(rec.dt.database) do
      if image == other then
        table.remove(rec.dt.database, index)
      end
    end
  end
  press(rec, { original })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolved 1 of 1 images (0 from the cache)" })
  truthy(rec.imported[1].group_leader == original, "grouped under the original")
  remove(dir)
end)

test("darktable set to write no sidecars: the key comes from the export, not an old sidecar", function()
  -- With darktable's *write sidecar file for each image* at "never", a sidecar on disk need not
  -- hold the library's edit (one copied in with the pictures, or written before the setting
  -- changed). Until engine 0.3.53 the key was made from it and the cache served the result of
  -- that older edit, without an export; the exported pixels now name the edit.
  local dir = workspace()
  local rec = plugin(dir, { ["darktable/write_sidecar_files"] = "never" })
  local original = stub.image(rec, dir .. "/my pictures/a.tif")
  for round = 1, 2 do
    press(rec, { original })
    rec.run_dispatched()
    eq(#rec.exports, round, "exported every time: the edit is read from its pixels")
  end
  local calls = read(dir .. "/calls.log")
  truthy(not calls:match("%-%-xmp"), "no key made from the sidecar")
  truthy(calls:match("\nkey [^\n]*/tmp/dt%-deconvolve%-[^\n]*/export%-"), "the export's key")
  remove(dir)
end)

test("an edit made during the export: the key is the export's, never the new edit's", function()
  -- The export holds one of the two edits: keyed by the new sidecar, a result of the old edit
  -- would be served to the next run of the new one (a helper's audit, engine 0.3.55).
  local dir = workspace()
  local sidecar = dir .. "/my pictures/a.tif.xmp"
  local function edit(ev)
    return '<darktable:history><rdf:Seq><rdf:li darktable:num="0" darktable:operation="exposure"'
      .. ' darktable:params="' .. ev .. '"/></rdf:Seq></darktable:history>'
  end
  files.write(sidecar, edit("old"))
  local rec = plugin(dir)
  rec.on_export = function()
    files.write(sidecar, edit("new"))
  end
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolved 1 of 1 images (0 from the cache)" })
  local keys = {}
  for line in read(dir .. "/calls.log"):gmatch("[^\n]+") do
    if line:match("^key ") then
      keys[#keys + 1] = line
    end
  end
  eq(#keys, 2, "keyed before the export, then again")
  truthy(keys[1]:match("%-%-xmp"), "first from the sidecar")
  truthy(keys[2]:match("^key [^ ]*/export%-") and not keys[2]:match("%-%-xmp"), keys[2])
  remove(dir)
end)

test("a key that fails on the export names the user's picture, not the export", function()
  -- (without sidecars the key is the export's pixels: its failure named the temporary file)
  local rec, dir = run_one("keyfail", nil, nil, { ["darktable/write_sidecar_files"] = "never" })
  eq(rec.toasts[1], "deconvolve failed for a.tif: " .. dir .. "/my pictures/a.tif is not a TIFF file")
  remove(dir)
end)

test("no temporary folder: said in words, without the plug-in's file and line", function()
  local dir = workspace()
  local rec = plugin(dir)
  shell("rm -rf '" .. dir .. "/tmp'")
  press(rec, { stub.image(rec, dir .. "/my pictures/a.tif") })
  rec.run_dispatched()
  eq(rec.toasts[1], "deconvolve failed for a.tif: cannot make a temporary folder in " .. dir .. "/tmp")
  remove(dir)
end)

test("an error that ends a run releases it: the next press runs", function()
  -- (a run that failed before its loop stayed claimed: "a deconvolution is already running"
  -- until darktable quit)
  local dir = workspace()
  local rec = plugin(dir)
  local create_job = rec.dt.gui.create_job
  rec.dt.gui.create_job = function()
    error("no job today", 0)
  end
  local original = stub.image(rec, dir .. "/my pictures/a.tif")
  press(rec, { original })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolve failed: no job today" })
  rec.dt.gui.create_job = create_job
  press(rec, { original })
  rec.run_dispatched()
  eq(rec.toasts[2], "deconvolved 1 of 1 images (0 from the cache)")
  eq(leftovers(dir), "")
  remove(dir)
end)

test("a result that cannot be finished leaves the library and its folder", function()
  -- (an error after the import left it grouped but without its tags, its file beside the
  -- original, and a raw Lua error on the screen)
  local dir = workspace()
  local rec = plugin(dir)
  local original = stub.image(rec, dir .. "/my pictures/a.tif")
  rec.dt.tags.attach = function()
    error("no tags today", 0)
  end
  press(rec, { original })
  rec.run_dispatched()
  eq(rec.toasts, { "deconvolve failed for a.tif: the result " .. dir
    .. "/my pictures/a_deconv.tif could not be finished: no tags today" })
  eq(rec.deleted, 1, "taken out of the library")
  eq(read(dir .. "/my pictures/a_deconv.tif"), nil, "its file removed")
  eq(leftovers(dir), "")
  remove(dir)
end)

test("a file made at the kernel picture's name during the job is not replaced", function()
  -- The names are chosen free before the export; until engine 0.3.53 `cache kernel` then wrote
  -- the kernel's picture over whatever had been made at its name since.
  local dir = workspace()
  shell("touch '" .. dir .. "/kernels'")
  local rec = plugin(dir)
  local kernel = dir .. "/my pictures/a_deconv.kernel.png"
  rec.on_read = function() -- while the first command runs, a file appears at the name
    shell("echo mine > '" .. kernel .. "'")
    rec.on_read = nil
  end
  local original = stub.image(rec, dir .. "/my pictures/a.tif")
  press(rec, { original })
  rec.run_dispatched()
  eq(read(kernel), "mine\n", "the file made meanwhile is kept")
  truthy(rec.toasts[1]:match("no kernel picture: .*a_deconv%.kernel%.png was made meanwhile"),
    rec.toasts[1])
  -- Again, with nothing in the way: the kernel's picture beside the result, said so.
  press(rec, { original })
  rec.run_dispatched()
  eq(read(dir .. "/my pictures/a_deconv_1.kernel.png"), "png")
  truthy(rec.toasts[3]:match("%(kernel: .*a_deconv_1%.kernel%.png%)$"), rec.toasts[3])
  eq(leftovers(dir), "", "the other kernel picture went with the run's folder")
  remove(dir)
end)

test("pictures the engine left as they were are counted so in the summary", function()
  -- Until engine 0.3.58 a run whose every picture came back as it was (no blur found, its
  -- result a copy) ended "deconvolved 2 of 2 images" (a helper's batch in a real darktable).
  local dir = workspace()
  shell("touch '" .. dir .. "/kernels' '" .. dir .. "/no-blur'")
  local rec = plugin(dir)
  run_each(rec, dir, { "a.tif" })
  eq(rec.toasts[2], "deconvolved 1 of 1 images (0 from the cache); 1 came back as it was: "
    .. "no blur to remove was found")
  run_each(rec, dir, { { "a.tif", "b.tif" } })
  eq(rec.toasts[#rec.toasts], "deconvolved 2 of 2 images (1 from the cache); 2 came back as they "
    .. "were: no blur to remove was found")
  remove(dir)
end)

-- Whether quitting darktable (after the runs made on `rec`) stopped the worker.
local function stopped_at_exit(rec, dir)
  rec.events["deconvolve/exit"].fn("exit")
  return read(dir .. "/calls.log"):match("\nshutdown\n") ~= nil
end

test("a worker stopped from outside and started again by a run is stopped at the exit", function()
  -- Until engine 0.3.59 whether the plug-in had started the worker was asked at its first run
  -- only: a worker of the user's at that run, stopped later, was started again by a submit of
  -- ours and kept running after darktable quit (a helper, in a real darktable).
  local dir = workspace()
  shell("echo 5555 >'" .. dir .. "/worker-up'") -- the user's own worker
  local rec = plugin(dir)
  run_each(rec, dir, { "a.tif", "b.tif" }, function(index)
    if index == 2 then -- stopped from outside: the next submit starts one of ours
      os.remove(dir .. "/worker-up")
    end
  end)
  eq(rec.toasts[2], "deconvolved 1 of 1 images (0 from the cache)")
  truthy(stopped_at_exit(rec, dir), "the worker the second run started is stopped")
  remove(dir)
end)

test("a worker the user started is left running at the exit, however many runs", function()
  local dir = workspace()
  shell("echo 5555 >'" .. dir .. "/worker-up'")
  local rec = plugin(dir)
  run_each(rec, dir, { "a.tif", "b.tif" })
  truthy(not stopped_at_exit(rec, dir), "no shutdown")
  remove(dir)
end)

test("a worker that is not the one ours started is left running at the exit", function()
  -- Ours (pid 4242, started 7) killed and the user's started, between two runs: the first
  -- version of the fix above stopped it (once started, a worker stayed "ours"). Nor does a pid
  -- alone name a process: another worker may be given ours's.
  for _, replaced in ipairs({ "echo 5555 >worker-up", "echo 9 >worker-started" }) do
    local dir = workspace()
    local rec = plugin(dir)
    run_each(rec, dir, { "a.tif", "b.tif" }, function(index)
      if index == 2 then
        shell("cd '" .. dir .. "' && " .. replaced)
      end
    end)
    truthy(not stopped_at_exit(rec, dir), replaced)
    remove(dir)
  end
end)

test("the user's worker stopped during a batch: the one a later picture started is stopped", function()
  -- (asked once a run, the second picture's submit started a worker nobody stopped)
  local dir = workspace()
  shell("echo 5555 >'" .. dir .. "/worker-up'; touch '" .. dir .. "/user-stops'")
  local rec = plugin(dir)
  run_each(rec, dir, { { "a.tif", "b.tif" } }) -- one run of both
  eq(rec.toasts, { "deconvolved 2 of 2 images (0 from the cache)" })
  truthy(stopped_at_exit(rec, dir), "the worker b's submit started is stopped")
  remove(dir)
end)

check.run()
