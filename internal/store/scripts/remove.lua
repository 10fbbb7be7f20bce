-- remove.lua — delete one finished flow now, or trim finished flows.
-- KEYS[1]  namespace prefix
-- ARGV     now, "flow", flow id
--       or now, "trim", max age ms (0: any age), max count (-1: any), limit
-- Returns  {'ok', flows deleted, more ("1": call again, a flow or more
--          is left to delete; see drop in lib/4-maintenance.lua)} | {'notfound'} |
--          {'state', unfinished nodes}
local mode = ARGV[2]
if mode == 'trim' then
  local n, more = trim(tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
  commit()
  return {'ok', tostring(n), more and '1' or '0'}
end
local f = ARGV[3]
local member = f
local left = redis.call('HGET', KFM .. f, 'left')
if left then
  if tonumber(left) > 0 then return {'state', left} end
else
  local n = load(f)
  if not n or n.fl ~= f then return {'notfound'} end
  if not terminal(n.st) then return {'state', '1'} end
  member = SEP .. f
end
local n, more = drop({member})
commit()
return {'ok', tostring(n), more and '1' or '0'}
