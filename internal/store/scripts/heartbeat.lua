-- heartbeat.lua — extend the leases a runner still holds and mark it alive.
-- KEYS[1]  namespace prefix
-- ARGV     now, worker, lease ms, info (the runner's record, JSON: host,
--          queues and types it serves, …; "" keeps the last one), then
--          id, token pairs
-- Returns  the time by the script's clock (ms), then the ids whose lease
--          was lost (expired and recovered, cancelled, …)
local worker, leaseMs, info = ARGV[2], tonumber(ARGV[3]), ARGV[4]
redis.call('ZADD', KRUNNERS, NOW, worker)
if info ~= '' then redis.call('HSET', KRINFO, worker, info) end
-- forget runners silent for a day, so restarts do not pile up
local gone = redis.call('ZRANGEBYSCORE', KRUNNERS, '-inf', NOW - 86400000, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', KRUNNERS, unpack(gone))
  redis.call('HDEL', KRINFO, unpack(gone))
end
local out = {NOWS}
for i = 5, #ARGV, 2 do
  local id, tk = ARGV[i], ARGV[i + 1]
  local v = redis.call('HMGET', KN .. id, 'st', 'tk')
  if v[1] == 'active' and v[2] == tk then
    zop(ACTIVE, id, NOW + leaseMs)
  else
    out[#out + 1] = id
  end
end
flushZ()
return out
