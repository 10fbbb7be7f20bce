-- expand.lua — complete an active node by adding a sub-graph to its flow.
-- The node waits (blocked, ex=1) until every sink of the sub-graph is
-- terminal; then it succeeds, or fails if any of them failed or was
-- cancelled. It keeps the sub-graph's sinks (xs) and nodes (xn), so that a
-- retry can wait for them again or discard them.
-- KEYS[1]  namespace prefix
-- ARGV     now, id, token, result JSON, node count, then the nodes as insert()
--          reads them; the sub-graph's sinks are listed by the caller with the
--          expanding node among their children.
-- Returns  as enqueue.lua, or {'lost'} when the lease is no longer held, or
--          {'cycle', id, …} when a node of the sub-graph depends on a job
--          downstream of the expanding node (the path from it to that job,
--          then the node). Nothing is written unless it returns 'ok'.
local id, tk, result = ARGV[2], ARGV[3], ARGV[4]
local x = load(id)
if not x or x.st ~= 'active' or x.tk ~= tk then return {'lost'} end
local nodes, byId = parse(6, tonumber(ARGV[5]))
local bad = check(nodes, byId) or cycle(x, nodes, byId)
if bad then return bad end
if x.single then
  -- a one-node flow grows into a real one, keyed by the node's ID
  if redis.call('EXISTS', KFM .. id) == 1 then return {'flowid', id} end
  local created = string.match(x.tl, '^[^,]+,(%d+)')
  redis.call('SADD', KF .. id, id)
  redis.call('HSET', KFM .. id, 'n', 1, 'left', 1, 'ca', created or NOW)
  x.m = id .. string.sub(x.m, 2)
  put(x, 'm', x.m)
  x.single = false
end
local res = write(x.fl, false, nodes, byId, false)
-- count the sinks that are still unfinished; one that already ended badly
-- (a dependency outside the sub-graph had failed) fails the node at once
local pending, bad, sinks, made = 0, nil, {}, {}
for _, sub in ipairs(nodes) do
  if not sub.existing then
    local n = load(sub.id)
    made[#made + 1] = sub.id
    for _, c in ipairs(split(n.c)) do
      if c == id then
        sinks[#sinks + 1] = sub.id
        if not terminal(n.st) then pending = pending + 1 end
        if n.st == 'failed' or n.st == 'cancelled' then bad = n end
      end
    end
  end
end
x.ex, x.pe, x.xs, x.xn = '1', pending, table.concat(sinks, SEP), table.concat(made, SEP)
put(x, 'r', result); put(x, 'ex', '1'); put(x, 'pe', pending); put(x, 'tk', '')
put(x, 'xs', x.xs); put(x, 'xn', x.xn)
if bad then
  finish(x, 'failed', 'sub-graph node ' .. bad.id .. ' ' .. bad.st, bad.id)
elseif pending == 0 then
  finish(x, 'succeeded')
else
  move(x, 'blocked', nil, {'tk', ''})
end
commit()
return res
