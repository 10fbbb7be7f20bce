-- heartbeat.lua — extend the leases a runner still holds and mark it alive.
-- KEYS[1]  namespace prefix
-- ARGV     now, worker, lease ms, then id, token pairs
-- Returns  the ids whose lease was lost (expired and recovered, cancelled, …)
local worker, leaseMs = ARGV[2], tonumber(ARGV[3])
redis.call('ZADD', P .. 'runners', NOW, worker)
-- forget runners silent for a day, so restarts do not pile up
redis.call('ZREMRANGEBYSCORE', P .. 'runners', '-inf', NOW - 86400000)
local lost = {}
for i = 4, #ARGV, 2 do
  local id, tk = ARGV[i], ARGV[i + 1]
  local v = redis.call('HMGET', P .. 'n:' .. id, 'st', 'tk')
  if v[1] == 'active' and v[2] == tk then
    zop(ACTIVE, id, NOW + leaseMs)
  else
    lost[#lost + 1] = id
  end
end
flushZ()
return lost
