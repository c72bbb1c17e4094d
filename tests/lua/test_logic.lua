-- The plug-in's pure logic (lua/lib/deconvolve/logic.lua), with plain lua5.4.
local check = require "harness"
local logic = require "lib/deconvolve/logic"
local test, eq, truthy = check.test, check.eq, check.truthy

-- What /bin/sh makes of a command line: one argument per line.
local function shell_words(line)
  local pipe = assert(io.popen("printf '%s\\n' " .. line))
  local words = {}
  for word in pipe:lines() do
    words[#words + 1] = word
  end
  pipe:close()
  return words
end

test("quote: awkward paths reach the program verbatim through a real shell", function()
  local paths = {
    "/photos/plain.tif",
    "/photos/with space/IMG 1.tif",
    "/photos/it's/\"quoted\".tif",
    "/photos/$HOME `id` ; rm -rf x & |.tif",
    "/photos/back\\slash/*?[a].tif",
    "-starts-with-dash",
    "",
  }
  for _, path in ipairs(paths) do
    eq(shell_words(logic.quote(path)), { path }, path)
  end
end)

test("quote: plain words stay unquoted, others get single quotes", function()
  eq(logic.quote("/a/b_c-1.tif"), "/a/b_c-1.tif")
  eq(logic.quote("a b"), "'a b'")
  eq(logic.quote("it's"), "'it'\\''s'")
  eq(logic.quote(15), "15")
end)

test("command_line: program and every argument quoted", function()
  local line = logic.command_line("/opt/my tools/dt-deconvolve", { "key", "/p/a b.tif", "--blur", "15" })
  eq(line, "'/opt/my tools/dt-deconvolve' key '/p/a b.tif' --blur 15")
end)

local settings = { blur = 15, tolerance = 5, priority = 0.3, window = "centre" }

test("blur_arg: the engine finds the size, or the slider's odd size, which varying always takes", function()
  eq(logic.blur_arg({ blur_mode = "auto", blur = 21 }), "auto")
  eq(logic.blur_arg({ blur_mode = "slider", blur = 20 }), "21")
  eq(logic.blur_arg({ blur_mode = "auto", blur = 21, varying = true }), "21", "varying needs a size")
  eq(logic.settings_tag({ blur_mode = "auto", blur = 15, tolerance = 5 }),
    "dt-deconvolve|blur auto|tolerance 5")
end)

test("engine_args: the settings that change pixels, in the CLI's terms", function()
  eq(logic.engine_args(settings),
    { "--blur", "15", "--window", "centre", "--tolerance", "5", "--priority", "0.3" })
  local preview = { blur = 14, tolerance = 2.25, priority = -1, window = "auto", preview = true }
  eq(logic.engine_args(preview), { "--blur", "15", "--window", "auto", "--tolerance", "2.25",
    "--priority", "-1" }, "a preview's key names it by its export")
  preview.scale = 0.5
  local submit = logic.submit_args("/t/e.tif", "/p/a.tif", "ab", preview)
  eq({ submit[#submit - 2], submit[#submit - 1] }, { "--scale", "0.5" }, "the job shrinks it")
  local varying = { blur = 21, tolerance = 5, priority = 0, window = "auto", varying = true }
  eq(logic.engine_args(varying), { "--blur", "21", "--window", "auto", "--tolerance", "5",
    "--priority", "0", "--varying" })
end)

test("key_args: sidecar, duplicate index, export settings and engine options", function()
  local export = logic.export_signature({ bpp = 32, max_side = 0, profile = "-1::-1" })
  eq(export, "tiff bpp=32 max=0 profile=-1::-1")
  eq(logic.export_signature({ bpp = 32, max_side = 0, profile = "-1::-1" }, true),
    "tiff bpp=32 max=0 profile=-1::-1 light=scene", "a scene-referred export is another export: another key")
  truthy(logic.export_signature({ bpp = 32, max_side = 0, profile = "3::0" }) ~= export,
    "another export profile (darktable's export settings) is another key")
  truthy(logic.export_signature({ bpp = 32, max_side = 1600, profile = "-1::-1" }) ~= export,
    "a preview's export is another key")
  eq(logic.key_args("/p/IMG 1.CR2", { sidecar = "/p/IMG 1.CR2.xmp", duplicate = 2 }, settings, export),
    { "key", "/p/IMG 1.CR2", "--xmp", "/p/IMG 1.CR2.xmp", "--duplicate", "2", "--export", export,
      "--blur", "15", "--window", "centre", "--tolerance", "5", "--priority", "0.3" })
  local no_sidecar = logic.key_args("/tmp/export.tif", { duplicate = 0 }, settings, export)
  eq(no_sidecar[3], "--duplicate", "no --xmp without a sidecar")
end)

test("submit, lookup and clean arguments follow the contract", function()
  eq(logic.submit_args("/tmp/e.tif", "/p/a_deconv.tif", "ab12", settings),
    { "submit", "/tmp/e.tif", "-o", "/p/a_deconv.tif", "--no-clobber", "--key", "ab12", "--blur",
      "15", "--window", "centre", "--tolerance", "5", "--priority", "0.3", "--wait" })
  eq(logic.lookup_args("ab12", "/p/a b.tif"),
    { "cache", "lookup", "ab12", "-o", "/p/a b.tif", "--no-clobber" })
  eq(logic.kernel_args("ab12", "/p/a.png"), { "cache", "kernel", "ab12", "-o", "/p/a.png", "--no-clobber" })
  eq(logic.clean_args(false, "/tmp/dt"), { "cache", "clean", "--on-exit", "--exports-dir=/tmp/dt" })
  eq(logic.clean_args(true, "-x"), -- a folder named like an option is still the folder
    { "cache", "clean", "--on-exit", "--exports-dir=-x", "--keep-results" })
  eq(logic.time_limited("dt-deconvolve shutdown", 30), "timeout -k 5 30 dt-deconvolve shutdown")
end)

test("parse_line: WORKER, JOB, PROGRESS, DONE and anything else", function()
  eq(logic.parse_line("WORKER 4242 7485481"), { kind = "worker", identity = "4242:7485481" })
  eq(logic.parse_line("WORKER 4242"), nil, "a worker is named by its pid and its start")
  eq(logic.parse_line("WORKER 4242 7485481 DONE /etc/passwd"), nil)
  eq(logic.parse_line("JOB 7f3a"), { kind = "job", id = "7f3a" })
  eq(logic.parse_line("PROGRESS 0.25 deblurring"), { kind = "progress", fraction = 0.25 })
  eq(logic.parse_line("PROGRESS 1 writing\r\n"), { kind = "progress", fraction = 1 })
  eq(logic.parse_line("PROGRESS 1.7 queued").fraction, 1, "fraction clamped")
  eq(logic.parse_line("PROGRESS 0.5"), { kind = "progress", fraction = 0.5 })
  eq(logic.parse_line("PROGRESS 0.5 hacking"), { kind = "progress", fraction = 0.5 })
  eq(logic.parse_line("DONE /p/with%20space/a_deconv.tif"), { kind = "done", path = "/p/with space/a_deconv.tif" })
  eq(logic.parse_line("DONE /p/with space/a_deconv.tif"), nil, "a raw space is no field")
  eq(logic.parse_line("PROGRESS half deblurring"), nil)
  eq(logic.parse_line("warning: something"), nil)
  eq(logic.parse_line(""), nil)
  eq(logic.parse_line(nil), nil)
end)

test("parse_line: BLUR carries the blur's confidence, the kernel used and the reason", function()
  eq(logic.parse_line("BLUR 0.83 free-form a 15 px blur, found alike on two parts of the picture"),
    { kind = "blur", confidence = 0.83, kernel = "free-form",
      reason = "a 15 px blur, found alike on two parts of the picture" })
  eq(logic.parse_line("BLUR 1.5 none odd").confidence, 1, "confidence clamped")
  eq(logic.parse_line("BLUR high none no"), nil)
  eq(logic.parse_line("BLUR 0.5 gaussian"), nil, "no reason")
  local varying = logic.parse_line("BLUR 0.71 varying the blur varies across the frame: 7 of 9 parts")
  eq(logic.blur_tag(varying), "dt-deconvolve|kernel varying|confidence 0.7", "a varying run's tag")
end)

test("parse_kernel: the blur, then the picture's hit or a miss; nothing else", function()
  local blur, found, path = logic.parse_kernel("BLUR 0.90 gaussian mild\nhit /p/a%20b.kernel.png\n")
  eq({ blur.kernel, blur.confidence, found, path }, { "gaussian", 0.9, "hit", "/p/a b.kernel.png" })
  blur, found, path = logic.parse_kernel("miss\n")
  eq(blur, nil, "a given kernel: no blur line")
  eq(found, "miss")
  eq(path, nil)
  eq(logic.parse_kernel("hit /a.png\nhit /b.png"), nil, "two answers")
  eq(logic.parse_kernel("hit /a.png\nBLUR 0.5 none late"), nil, "the blur comes first")
  eq(logic.parse_kernel("BLUR 0.5 none only"), nil, "no answer")
  eq(select(3, logic.parse_kernel("hit /a%0ADONE%20/x.png\n")), "/a\nDONE /x.png", "one field")
  eq(logic.parse_kernel(nil), nil)
end)

test("kernel_path and blur_tag: beside the result, and what the result was deblurred with", function()
  eq(logic.kernel_path("/p/my.photo_deconv.tif"), "/p/my.photo_deconv.kernel.png")
  eq(logic.kernel_path("/p.d/a_deconv_1.tif"), "/p.d/a_deconv_1.kernel.png")
  eq(logic.blur_tag({ kernel = "free-form", confidence = 0.834 }),
    "dt-deconvolve|kernel free-form|confidence 0.8")
end)

test("unescape: exactly the bytes the command escaped, nothing forged", function()
  eq(logic.unescape("/a%0ADONE%20/etc/passwd"), "/a\nDONE /etc/passwd")
  eq(logic.unescape("/caf%E9%FF%25.tif"), "/caf\xe9\xff%.tif")
  eq(logic.unescape("/a%2"), nil, "a stray %")
  eq(logic.unescape("/a%zz"), nil)
  eq(logic.unescape("/a b"), nil)
  eq(logic.unescape("/a\tb"), nil)
  eq(logic.unescape(""), nil)
  eq(logic.unescape(nil), nil)
  -- the line a name holding a line break and a forged DONE makes is one field, decoded whole
  eq(logic.parse_line("DONE /p/x%0ADONE%20/home/u/victim.tif"),
    { kind = "done", path = "/p/x\nDONE /home/u/victim.tif" })
end)

test("parse_lookup and parse_key", function()
  eq({ logic.parse_lookup("miss\n") }, { "miss" })
  eq({ logic.parse_lookup("hit /p/a%20b_deconv.tif\n") }, { "hit", "/p/a b_deconv.tif" })
  eq(logic.parse_lookup("hit /p/a\nhit /etc/passwd"), nil, "two lines are no answer")
  eq(logic.parse_lookup("error"), nil)
  eq(logic.parse_key("0123abcdef\n"), "0123abcdef")
  eq(logic.parse_key("not a key"), nil)
  eq(logic.parse_key(""), nil)
end)

test("exit_code: from a real shell, with Lua 5.4's close() triple", function()
  eq(logic.exit_code(os.execute("exit 0")), 0)
  eq(logic.exit_code(os.execute("exit 3")), 3)
  local pipe = io.popen("echo x; exit 1")
  pipe:read("a")
  eq(logic.exit_code(pipe:close()), 1)
  eq(logic.exit_code(nil, "signal", 9), 137)
  eq(logic.exit_code(true), 0)
end)

test("output_path: nil rather than an endless search or a name too long", function()
  eq(logic.output_path("/p", "a.tif", "_deconv", function() return true end), nil, "all taken")
  local long = string.rep("x", 240) .. ".tif"
  eq(logic.output_path("/p", long, "_deconv", function() return false end), nil, "too long")
end)

test("printable and replace_plain: a command's line fit for a message", function()
  eq(logic.printable("\27[31merror\27[0m: a\rb\n"), "error: a b")
  eq(logic.replace_plain("in /t/e-1.tif (/t/e-1.tif)", "/t/e-1.tif", "/p/%a.tif"),
    "in /p/%a.tif (/p/%a.tif)", "plain text, not patterns")
end)

test("one_line: a name shown as it is, on one line, as the command writes it", function()
  eq(logic.one_line("caf\xc3\xa9 bad\xfe\xff.tif"), "caf\xc3\xa9 bad\\xfe\\xff.tif", "not UTF-8")
  eq(logic.one_line("\xe2\x82"), "\\xe2\\x82", "a sequence cut short")
  eq(logic.one_line("\xc0\xaf"), "\\xc0\\xaf", "an overlong slash")
  eq(logic.one_line("new\nline.tif"), "new\\x0aline.tif", "a line break forges no second line")
  eq(logic.one_line("tiny\nDONE /x.tif"), "tiny\\x0aDONE /x.tif")
  eq(logic.one_line("esc\27[31mred\27]0;t\7\r\t\127"), "esc\\x1b[31mred\\x1b]0;t\\x07\\x0d\\x09\\x7f")
  eq(logic.one_line("a\xC2\x9B2J\xC2\xA0b"), "a\\x9b2J\\xa0b", "C1 controls, the no-break space")
  eq(logic.one_line("photo\xE2\x80\xAEgnp.tif"), "photo\\u202egnp.tif", "the marks that turn text")
  eq(logic.one_line("a\xE2\x80\xA8b\xE2\x80\x8Fc\xD8\x9Cd\xEF\xBB\xBF"),
    "a\\u2028b\\u200fc\\u061cd\\ufeff")
  eq(logic.one_line("Café 東京 😀 a\\b"), "Café 東京 😀 a\\b", "every script kept")
  eq(logic.one_line(""), "")
  eq(logic.one_line("plain"), "plain")
end)

test("parse_line: a BLUR line's kernel is one word, its reason printable", function()
  eq(logic.parse_line("BLUR 0.5 a|b||c tags"), nil, "no nested tags from a kernel name")
  eq(logic.parse_line("BLUR nan none r"), nil)
  eq(logic.parse_line("BLUR 0.5 none \27[1mbold\27[0m").reason, "bold")
end)

test("output_path: next to the original, never over an existing file", function()
  local taken = {}
  local function exists(path)
    return taken[path] == true
  end
  eq(logic.output_path("/p", "IMG_1.CR2", "_deconv", exists), "/p/IMG_1_deconv.tif")
  taken["/p/IMG_1_deconv.tif"] = true
  eq(logic.output_path("/p", "IMG_1.CR2", "_deconv", exists), "/p/IMG_1_deconv_1.tif")
  taken["/p/IMG_1_deconv_1.tif"] = true
  eq(logic.output_path("/p", "IMG_1.CR2", "_deconv", exists), "/p/IMG_1_deconv_2.tif")
  eq(logic.output_path("/p q", "a.b.tif", "", exists), "/p q/a.b_deconv.tif", "empty suffix")
  eq(logic.output_path("/p", "x.tif", "/../evil", exists), "/p/x..evil.tif", "no path in a suffix")
  eq(logic.stem(".hidden"), ".hidden")
  eq(logic.stem("noext"), "noext")
end)

test("copyable_tags: darktable's own and this plug-in's tags stay behind", function()
  eq(logic.copyable_tags({ "darktable|format|tif", "people|alice", "darktable", "places|x|y",
    "dt-deconvolve|blur 15|tolerance 5", "darktablers" }),
    { "people|alice", "places|x|y", "darktablers" })
end)

test("a preview is tagged as one, a full-size result is not", function()
  eq(logic.result_tags({ blur = 15, tolerance = 5, preview = true, scale = 0.5 }),
    { "dt-deconvolve|blur 15|tolerance 5", "dt-deconvolve|preview" })
  eq(logic.result_tags({ blur = 15, tolerance = 5 }), { "dt-deconvolve|blur 15|tolerance 5" })
  -- a picture no larger than a preview comes back at its own size: not a preview
  eq(logic.result_tags({ blur = 15, tolerance = 5, preview = true, scale = 1 }),
    { "dt-deconvolve|blur 15|tolerance 5" })
end)

test("settings_tag records blur size and tolerance", function()
  eq(logic.settings_tag({ blur = 15, tolerance = 5 }), "dt-deconvolve|blur 15|tolerance 5")
  eq(logic.settings_tag({ blur = 8, tolerance = 2.4999997 }), "dt-deconvolve|blur 9|tolerance 2.5")
end)

test("numbers: float noise rounded away, blur odd and within 3-51", function()
  eq(logic.format_number(2.2499997), "2.25")
  eq(logic.format_number(-0.0001), "0")
  eq(logic.format_number(10), "10")
  eq(logic.odd_blur(2), 3)
  eq(logic.odd_blur(15.4), 15)
  eq(logic.odd_blur(16), 17)
  eq(logic.odd_blur(100), 51)
  eq(logic.clamp(30, logic.TOLERANCE, 2), 20)
  eq(logic.round(2.2499997, 2), 2.25)
end)

test("a preview: at most 1600 px a side, small pictures untouched", function()
  eq(logic.result_side({ preview = true }), 1600)
  eq(logic.result_side({}), 0, "a full-size result: the picture's own size")
  eq(logic.preview_scale(400, 300), 1)
  eq(logic.preview_scale(6000, 4000), 0.26)
  eq(logic.preview_scale(nil, nil), 1)
end)

test("batch_fraction spreads images evenly", function()
  eq(logic.batch_fraction(1, 4, 0), 0)
  eq(logic.batch_fraction(2, 4, 0.5), 0.375)
  eq(logic.batch_fraction(4, 4, 1), 1)
  eq(logic.batch_fraction(1, 0, 0), 1)
end)

test("error_reason: the CLI's one-line error without its prefix", function()
  eq(logic.error_reason("dt-deconvolve: error: no such file or folder: /x\n", "f"), "no such file or folder: /x")
  eq(logic.error_reason("dt-deconvolve submit: error: bad blur (see --help)\n", "f"), "bad blur (see --help)")
  eq(logic.error_reason("a warning\ndt-deconvolve: error: out of memory\n", "f"), "out of memory")
  eq(logic.error_reason("  Killed  \n", "f"), "Killed")
  eq(logic.error_reason("\n\n", "fallback"), "fallback")
  eq(logic.error_reason(nil, "fallback"), "fallback")
end)

test("quote: a word with = is quoted, so a program named so is no assignment", function()
  eq(logic.quote("X=1"), "'X=1'")
  eq(shell_words(logic.quote("a=b")), { "a=b" })
  eq(logic.command_line("X=1", { "key" }), "'X=1' key")
end)

test("unescape: a path holding NUL is no path", function()
  eq(logic.unescape("/p/a%00b.tif"), nil)
  eq(logic.parse_line("DONE /p/a%00b.tif"), nil)
  eq(logic.parse_lookup("hit /p/a%00.tif"), nil)
end)

test("lines: a megabyte of spaces is read in linear time, a line over MAX_LINE is none", function()
  -- "%s+$" retried from every space: 200000 of them took about 30 s (a megabyte, an hour).
  local spaces = string.rep(" ", 200000) .. "x"
  local started = os.clock()
  eq(logic.parse_line("PROGRESS 0.5 " .. spaces:sub(-60000)), { kind = "progress", fraction = 0.5 })
  eq(logic.printable("a" .. spaces), "a" .. spaces:sub(1, -2) .. "x")
  eq(logic.error_reason("dt-deconvolve: error: bad" .. spaces .. "\n"), "bad" .. spaces)
  eq(logic.parse_lookup("hit /p" .. string.rep("\r", 200000) .. "x"), nil)
  assert(os.clock() - started < 5, "trimming is not linear: " .. (os.clock() - started) .. " s")
  eq(logic.parse_line("DONE /" .. string.rep("a", logic.MAX_LINE)), nil)
  eq(logic.parse_line("DONE /" .. string.rep("a", logic.MAX_LINE - 6)).kind, "done")
end)

test("printable: the C1 controls and the marks that turn text around become spaces", function()
  eq(logic.printable("photo\xE2\x80\xAEfit.exe"), "photo fit.exe")
  eq(logic.printable("a\xC2\x9B2Jb\xE2\x80\xA8c\xE2\x81\xA6d\xD8\x9Ce"), "a 2Jb c d e")
  eq(logic.printable("Café 東京"), "Café 東京")
end)

check.run()
