-- cancel.lua — cancel one unfinished node (its descendants follow their
-- policies; if it expanded, its sub-graph's unfinished nodes are cancelled
-- too: they were its work) or every unfinished node of a flow.
-- KEYS[1]  namespace prefix
-- ARGV     now, reason, "node" | "flow", id
-- Returns  {'ok', how many nodes the call ended} | {'notfound'} |
--          {'state', state} (a node that is already finished)
local reason, mode, id = ARGV[2], ARGV[3], ARGV[4]
if mode == 'node' then
  local n = load(id)
  if not n then return {'notfound'} end
  if terminal(n.st) then return {'state', n.st} end
  finish(n, 'cancelled', reason, n.id)
  if n.ex == '1' then cancelSubgraph(n, 'the job that expanded into it (' .. n.id .. ') was cancelled') end
  commit()
  return {'ok', tostring(ENDED)}
end
local ids = redis.call('SMEMBERS', KF .. id)
if #ids == 0 then ids = {id} end
local found = false
for _, nid in ipairs(ids) do
  local n = load(nid)
  if n then
    found = true
    if n.fl ~= id then n = nil end
  end
  if n and not terminal(n.st) then finish(n, 'cancelled', reason, n.id) end
end
if not found then return {'notfound'} end
commit()
return {'ok', tostring(ENDED)}
