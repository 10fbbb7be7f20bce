-- sync.lua — report a batch of step outcomes and claim the next nodes,
-- in one round trip. Each outcome is applied only if the node is still
-- active under the same lease token; a late report from an expired lease is
-- rejected.
-- KEYS[1]  namespace prefix
-- ARGV     now, worker, lease ms, stall limit, claim count, maintain ("1":
--          also promote due delayed nodes, recover expired leases and trim
--          finished flows), retain age ms, retain count (-1: unlimited),
--          queue count, queues..., type count, types... (the message types
--          of the runner's single steps: it claims up to claim count of
--          those), batch type count, then per batch step's type: type, how
--          many of it to claim (apart from the claim count),
--          outcome count, then per outcome: id, token, kind, a, b, span,
--          logs, batch, h (retry and fail: the error without its stack, for
--          the node's error history)
--          kinds: ok (a = result JSON) · retry (a = error JSON, b = delay ms)
--                 fail (a = error JSON) · skip (a = reason) · release (hand back)
-- Returns  {status per outcome ("1" applied, "0" rejected)...,
--           then per claimed node: id, meta, attempt, token, data, ready ms...,
--           then in how many ms maintenance is next due: 0 while finished
--           flows are left to delete, else when the next delayed node is
--           due, or "" (after maintenance) }
local worker, leaseMs, stallLimit = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local want, maintain = tonumber(ARGV[5]), ARGV[6] == '1'
local retainAge, retainCount = tonumber(ARGV[7]), tonumber(ARGV[8])
local nq = tonumber(ARGV[9])
local queues = {}
for i = 1, nq do queues[i] = ARGV[9 + i] end
local i = 10 + nq
local types = {}
for k = 1, tonumber(ARGV[i]) do types[k] = ARGV[i + k] end
i = i + 1 + #types
local batches, batchWant = {}, 0
for k = 1, tonumber(ARGV[i]) do
  local w = tonumber(ARGV[i + 2 * k])
  batches[k] = {ARGV[i + 2 * k - 1], w}
  batchWant = batchWant + w
end
i = i + 1 + 2 * #batches
local total = tonumber(ARGV[i])
i = i + 1
local out = {}
for _ = 1, total do
  local id, tk, kind, a, b, sp, lg, bt, h = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  i = i + 9
  local n = loadDone(id)
  if not n or n.st ~= 'active' or n.tk ~= tk then
    out[#out + 1] = '0'
  else
    out[#out + 1] = '1'
    if sp ~= '' then put(n, 'sp', sp) end
    if lg ~= '' then put(n, 'lg', lg) end
    if bt ~= '' then put(n, 'bt', bt); n.bt = bt end
    if h ~= '' then put(n, 'eh', history(redis.call('HGET', KN .. id, 'eh'), h)) end
    if kind == 'ok' then
      finish(n, 'succeeded', nil, nil, {'r', a})
    elseif kind == 'retry' and n.at < n.ma then
      local delay = tonumber(b)
      if delay > 0 then
        move(n, 'delayed', nil, {'er', a, 'tk', ''}, NOW + delay)
      else
        move(n, 'ready', nil, {'er', a, 'tk', ''})
      end
    elseif kind == 'retry' or kind == 'fail' then
      finish(n, 'failed', nil, nil, {'er', a})
    elseif kind == 'skip' then
      finish(n, 'skipped', a, n.id)
    else -- release: shutting down, not the step's fault
      n.at = n.at - 1
      move(n, 'ready', nil, {'tk', '', 'at', n.at})
    end
  end
end
if maintain then
  migrate(queues, 100)
  promote(100 + want + batchWant)
  recover(100, stallLimit)
end
local claimed = {}
if want > 0 and #types > 0 then claim(queues, types, want, worker, leaseMs, claimed) end
for _, bw in ipairs(batches) do
  if bw[2] > 0 then claim(queues, {bw[1]}, bw[2], worker, leaseMs, claimed) end
end
local trimLeft = false -- finished flows left to delete: maintain again at once
if maintain and (retainAge > 0 or retainCount >= 0) then
  local _, more = trim(retainAge, retainCount, 50)
  trimLeft = more
end
commit()
for k = 1, #claimed do out[#out + 1] = claimed[k] end
local nextDue = ''
if trimLeft then
  nextDue = '0'
elseif maintain then
  local first = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
  if first[2] then nextDue = string.format('%d', math.max(0, tonumber(first[2]) - NOW)) end
end
out[#out + 1] = nextDue
return out
