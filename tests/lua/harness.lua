--[[ A tiny test runner for plain lua5.4: `check.test(name, fn)` records a test, `check.run()`
     runs them all, prints one line per failure and exits non-zero if any failed. ]]

local check = { tests = {} }

function check.test(name, fn)
  check.tests[#check.tests + 1] = { name = name, fn = fn }
end

local function show(value)
  if type(value) == "string" then
    return string.format("%q", value)
  end
  if type(value) == "table" then
    local parts = {}
    for _, item in ipairs(value) do
      parts[#parts + 1] = show(item)
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(value)
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b
  end
  for key, value in pairs(a) do
    if not same(value, b[key]) then
      return false
    end
  end
  for key in pairs(b) do
    if a[key] == nil then
      return false
    end
  end
  return true
end

function check.eq(actual, expected, what)
  if not same(actual, expected) then
    error(string.format("%s: expected %s, got %s", what or "value", show(expected), show(actual)), 2)
  end
end

function check.truthy(value, what)
  if not value then
    error((what or "condition") .. " is false", 2)
  end
end

function check.run()
  local failed = 0
  for _, t in ipairs(check.tests) do
    local ok, err = pcall(t.fn)
    if not ok then
      failed = failed + 1
      print("FAIL " .. t.name .. ": " .. tostring(err))
    end
  end
  print(string.format("%d passed, %d failed", #check.tests - failed, failed))
  os.exit(failed == 0 and 0 or 1)
end

return check
