-- lib/6-expansion.lua — the sub-graph an expanded node keeps: what a
-- retry waits for again, a cancel ends and a retry of the node discards.

-- expansion returns the sinks and the nodes of the sub-graph node n
-- expanded into (empty when it did not expand).
local function expansion(n)
  if n.ex ~= '1' then return {}, {} end
  if n.xs == nil then
    local v = redis.call('HMGET', KN .. n.id, 'xs', 'xn')
    n.xs, n.xn = v[1] or '', v[2] or ''
  end
  return split(n.xs), split(n.xn)
end

-- subgraph lists the nodes of n's expansion and, nested, of theirs.
local function subgraph(n)
  local _, list = expansion(n)
  local seen = {}
  for _, id in ipairs(list) do seen[id] = true end
  local k = 1
  while k <= #list do
    local s = load(list[k])
    if s then
      local _, sub = expansion(s)
      for _, id in ipairs(sub) do
        if not seen[id] then seen[id] = true; list[#list + 1] = id end
      end
    end
    k = k + 1
  end
  return list, seen
end

-- without returns the c list c without child id (marked or not).
local function without(c, id)
  local keep = {}
  for mark, cid in string.gmatch(c, '(\30?)([^\31]+)') do
    if cid ~= id then keep[#keep + 1] = mark .. cid end
  end
  return table.concat(keep, SEP)
end

-- cancelSubgraph cancels the unfinished nodes of n's expansion (nested
-- ones too), after n ended: they were n's work. Their descendants outside
-- it follow their policies.
local function cancelSubgraph(n, why)
  local list, seen = subgraph(n)
  for _, id in ipairs(list) do
    local s = load(id)
    if s and not terminal(s.st) then finish(s, 'cancelled', why, n.id) end
  end
  return list, seen
end

-- discard deletes the sub-graph n expanded into, nested ones too, before
-- n runs its step again (a retry of n): its unfinished nodes are cancelled
-- first, so what waits on them outside is resolved by its policy, and the
-- jobs they depended on outside forget them. n is no longer expanded.
local function discard(n)
  local list, gone = cancelSubgraph(n, 'its expansion was discarded: ' .. n.id .. ' runs again')
  local dels, members = {}, {}
  for _, id in ipairs(list) do
    local s = load(id, true)
    if s then
      forget(s)
      for _, p in ipairs(cjson.decode(s.d).p or {}) do
        local pn = not gone[p] and load(p)
        if pn then
          pn.c = without(pn.c, id)
          put(pn, 'c', pn.c)
        end
      end
      s.w = nil -- deleted: nothing to write
      NODES[id] = nil
      dels[#dels + 1] = KN .. id
      members[#members + 1] = id
    end
  end
  for i = 1, #dels, 500 do redis.call('UNLINK', unpack(dels, i, math.min(i + 499, #dels))) end
  for i = 1, #members, 500 do redis.call('SREM', KF .. n.fl, unpack(members, i, math.min(i + 499, #members))) end
  if #members > 0 then redis.call('HINCRBY', KFM .. n.fl, 'n', -#members) end
  n.ex, n.xs, n.xn = nil, '', ''
  put(n, 'ex', ''); put(n, 'xs', ''); put(n, 'xn', '')
end
