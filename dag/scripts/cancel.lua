-- cancel.lua — cancel one node (its descendants follow their policies) or
-- every unfinished node of a flow.
-- KEYS[1]  namespace prefix
-- ARGV     now, reason, "node" | "flow", id
-- Returns  {'ok', cancelled count} | {'notfound'}
local reason, mode, id = ARGV[2], ARGV[3], ARGV[4]
local ids
if mode == 'flow' then
  ids = redis.call('SMEMBERS', P .. 'f:' .. id)
  if #ids == 0 then ids = {id} end
else
  ids = {id}
end
local found, cancelled = false, 0
for _, nid in ipairs(ids) do
  local n = load(nid)
  if n then
    found = true
    if mode == 'flow' and n.fl ~= id then n = nil end
  end
  if n and not terminal(n.st) then
    finish(n, 'cancelled', reason, n.id)
    cancelled = cancelled + 1
  end
end
if not found then return {'notfound'} end
commit()
return {'ok', tostring(cancelled)}
