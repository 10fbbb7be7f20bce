-- page.lua — a page of sorted sets merged, after a cursor (read only).
-- KEYS[1]  namespace prefix
-- ARGV     now (unused), limit, order ("1": highest score first), the
--          cursor's score and member ("" and "": from the start), then the
--          sets' keys after the prefix
-- Returns  per set: its size, how many entries follow, then that many
--          member, score pairs: up to limit entries after the cursor, in
--          the order (score, then member bytewise, reversed for "1"), so
--          the caller merges the sets and takes limit of them.
local limit, rev, cs, cm = tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4], ARGV[5]

-- less orders members bytewise, as Redis does (Lua's < follows the locale).
local function less(a, b)
  for k = 1, math.min(#a, #b) do
    local x, y = string.byte(a, k), string.byte(b, k)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- first is the rank, in the page's order, of key's first entry after the
-- cursor: past the entries of a better score, then a bisection of the ties
-- of the cursor's score by member (the cursor's own entry may have left).
local function first(key)
  if cs == '' then return 0 end
  local before
  if rev then before = redis.call('ZCOUNT', key, '(' .. cs, '+inf')
  else before = redis.call('ZCOUNT', key, '-inf', '(' .. cs) end
  local lo, hi = 0, redis.call('ZCOUNT', key, cs, cs)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local r = before + mid
    local m = (rev and redis.call('ZREVRANGE', key, r, r) or redis.call('ZRANGE', key, r, r))[1]
    local after
    if rev then after = less(m, cm) else after = less(cm, m) end
    if after then hi = mid else lo = mid + 1 end
  end
  return before + lo
end

local out = {}
for k = 6, #ARGV do
  local key = P .. ARGV[k]
  local r = first(key)
  local got
  if rev then got = redis.call('ZREVRANGE', key, r, r + limit - 1, 'WITHSCORES')
  else got = redis.call('ZRANGE', key, r, r + limit - 1, 'WITHSCORES') end
  out[#out + 1] = redis.call('ZCARD', key)
  out[#out + 1] = #got / 2
  for j = 1, #got do out[#out + 1] = got[j] end
end
return out
