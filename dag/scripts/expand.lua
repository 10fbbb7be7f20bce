-- expand.lua — complete an active node by adding a sub-graph to its flow.
-- The node waits (blocked, ex=1) until every sink of the sub-graph is
-- terminal; then it succeeds, or fails if any of them failed or was cancelled.
-- KEYS[1]  namespace prefix
-- ARGV     now, id, token, result JSON, node count, then the nodes as insert()
--          reads them; the sub-graph's sinks are listed by the caller with the
--          expanding node among their children.
-- Returns  as enqueue.lua, or {'lost'} when the lease is no longer held.
local id, tk, result = ARGV[2], ARGV[3], ARGV[4]
local x = load(id)
if not x or x.st ~= 'active' or x.tk ~= tk then return {'lost'} end
if x.single then
  -- a one-node flow grows into a real one, keyed by the node's ID
  local created = string.match(x.tl, '^[^,]+,(%d+)')
  redis.call('SADD', P .. 'f:' .. id, id)
  redis.call('HSET', P .. 'fm:' .. id, 'n', 1, 'left', 1, 'ca', created or NOW)
  x.m = id .. string.sub(x.m, 2)
  put(x, 'm', x.m)
  x.single = false
end
local res, _, nodes = insert(x.fl, false, 6, tonumber(ARGV[5]))
if res[1] ~= 'ok' then
  flushNodes() -- the node may have become a flow of its own above
  return res
end
-- count the sinks that are still unfinished; one that already ended badly
-- (a dependency outside the sub-graph had failed) fails the node at once
local pending, bad = 0, nil
for _, sub in ipairs(nodes) do
  local n = load(sub.id)
  local sink = false
  for _, c in ipairs(split(n.c)) do
    if c == id then sink = true end
  end
  if sink and not terminal(n.st) then pending = pending + 1 end
  if sink and (n.st == 'failed' or n.st == 'cancelled') then bad = n end
end
x.ex, x.pe = '1', pending
put(x, 'r', result); put(x, 'ex', '1'); put(x, 'pe', pending); put(x, 'tk', '')
if bad then
  finish(x, 'failed', 'sub-graph node ' .. bad.id .. ' ' .. bad.st, bad.id)
elseif pending == 0 then
  finish(x, 'succeeded')
else
  move(x, 'blocked', nil, {'tk', ''})
end
commit()
return res
