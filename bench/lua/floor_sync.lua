-- floor_sync.lua — complete a batch of leased jobs and lease the next ones,
-- in one call: the least a job queue with leases does per job (state check
-- under the lease token, a lease set for recovery, a done set).
-- KEYS[1] prefix · ARGV now, want, lease deadline, then per job: id, token
-- Returns the number completed, then per leased job: id, token, data
local P, now, want, deadline = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local done, rem, add = 0, {}, {}
for i = 4, #ARGV, 2 do
  local id, tk = ARGV[i], ARGV[i + 1]
  local v = redis.call('HMGET', P .. id, 'st', 'tk')
  if v[1] == 'active' and v[2] == tk then
    redis.call('HSET', P .. id, 'st', 'succeeded', 'r', 'null', 'tk', '')
    rem[#rem + 1] = id
    add[#add + 1] = now
    add[#add + 1] = id
    done = done + 1
  end
end
if done > 0 then
  redis.call('ZREM', P .. 'active', unpack(rem))
  redis.call('ZADD', P .. 'done', unpack(add))
end
local out = {done}
local popped = redis.call('ZPOPMIN', P .. 'ready', want)
local leased = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local v = redis.call('HMGET', P .. id, 'd', 'at')
  local at = tonumber(v[2]) + 1
  local tk = now .. ':' .. at
  redis.call('HSET', P .. id, 'st', 'active', 'at', at, 'tk', tk)
  leased[#leased + 1] = deadline
  leased[#leased + 1] = id
  out[#out + 1] = id
  out[#out + 1] = tk
  out[#out + 1] = v[1]
end
if #leased > 0 then redis.call('ZADD', P .. 'active', unpack(leased)) end
return out
