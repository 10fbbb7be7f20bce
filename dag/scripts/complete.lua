-- complete.lua — report a batch of step outcomes and claim the next nodes,
-- in one round trip. Each outcome is applied only if the node is still
-- active under the same lease token; a late report from an expired lease is
-- rejected.
-- KEYS[1]  namespace prefix
-- ARGV     now, worker, lease ms, stall limit, claim count, retain age ms,
--          retain count (-1: unlimited), queue count, queues...,
--          outcome count, then per outcome: id, token, kind, a, b, duration µs
--          kinds: ok (a = result JSON) · retry (a = error JSON, b = delay ms)
--                 fail (a = error JSON) · skip (a = reason) · release (hand back)
-- Returns  {status per outcome ("1" applied, "0" rejected)...,
--           then per claimed node: id, type, flow, attempt, token, data...,
--           then the next delayed due time in ms, or "" }
local worker, leaseMs, stallLimit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local want, retainAge, retainCount = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local nq = tonumber(ARGV[8])
local queues = {}
for i = 1, nq do queues[i] = ARGV[8 + i] end
local i = 9 + nq
local total = tonumber(ARGV[i])
i = i + 1
local out = {}
-- duration buckets in µs for the p95 estimate; keep in step with store.go.
local BUCKETS = {1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000}
local function timing(ty, outcomeName, us)
  stat(outcomeName .. '|' .. ty, 1)
  stat('n', 1)
  stat('us', us)
  local b = #BUCKETS + 1
  for k = 1, #BUCKETS do if us <= BUCKETS[k] then b = k break end end
  stat('b' .. b, 1)
end
for _ = 1, total do
  local id, tk, kind, a, b, us = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])
  i = i + 6
  local n = load(id)
  if not n or n.st ~= 'active' or n.tk ~= tk then
    out[#out + 1] = '0'
  else
    out[#out + 1] = '1'
    if kind == 'ok' then
      finish(n, 'succeeded', nil, nil, {'r', a})
      timing(n.ty, 'ok', us)
    elseif kind == 'retry' and n.at < n.ma then
      local delay = tonumber(b)
      if delay > 0 then
        move(n, 'delayed', nil, {'er', a, 'tk', ''}, NOW + delay)
      else
        move(n, 'ready', nil, {'er', a, 'tk', ''})
      end
      stat('retry|' .. n.ty, 1)
    elseif kind == 'retry' or kind == 'fail' then
      finish(n, 'failed', nil, nil, {'er', a})
      timing(n.ty, 'fail', us)
    elseif kind == 'skip' then
      finish(n, 'skipped', a, n.id)
    else -- release: shutting down, not the step's fault
      n.at = n.at - 1
      move(n, 'ready', nil, {'tk', '', 'at', n.at})
    end
  end
end
promote(100 + want)
recover(100, stallLimit)
local claimed = {}
if want > 0 then claim(queues, want, worker, leaseMs, claimed) end
if retainAge > 0 or retainCount >= 0 then trim(retainAge, retainCount, 20) end
commit()
for k = 1, #claimed do out[#out + 1] = claimed[k] end
local nextDue = ''
if want > 0 and #claimed == 0 then
  local first = redis.call('ZRANGE', P .. 'delayed', 0, 0, 'WITHSCORES')
  if first[2] then nextDue = first[2] end
end
out[#out + 1] = nextDue
return out
