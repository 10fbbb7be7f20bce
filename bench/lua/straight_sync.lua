-- straight_sync.lua — Trellis's claim and completion of one-node jobs of
-- one lane, with the same commands as the engine's sync (the same node
-- fields read and written, the lease set, the lane's ready and succeeded
-- sets, the done set, the per-state counters and one event entry), in
-- straight-line Lua: no node tables, no deferred writes, no limits,
-- priorities, flows, children or retries. It runs on nodes that Trellis
-- enqueued (cost_test.go, BenchmarkJobCost/straight), to show what the
-- state machine's structure costs over its commands.
-- KEYS[1] namespace prefix · ARGV now, want, worker, lease deadline, lane,
-- outcome count, then per outcome: id, token, result
-- Returns per outcome "1" or "0", then per claimed node: id, meta,
-- attempt, token, data, ready ms
local P, now, want, worker, deadline, lane = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local KN = P .. 'n:'
local out, rem, ix, done, ev = {}, {}, {}, {}, {}
local ok, i = 0, 7
for _ = 1, tonumber(ARGV[6]) do
  local id, tk, r = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  local v = redis.call('HMGET', KN .. id, 'st', 'm', 'at', 'tk', 'tl', 'c')
  if v[1] == 'active' and v[4] == tk then
    redis.call('HSET', KN .. id, 'st', 'succeeded', 'tl', v[5] .. 'succeeded,' .. now .. ',' .. v[3] .. '|', 'r', r, 'tk', '')
    rem[#rem + 1] = id
    ix[#ix + 1], ix[#ix + 2] = now, id
    done[#done + 1], done[#done + 2] = now, '\31' .. id
    ev[#ev + 1] = id .. '\31active\31succeeded\31' .. now .. '\31' .. v[3] .. '\31'
    ok = ok + 1
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
if ok > 0 then
  redis.call('ZREM', P .. 'active', unpack(rem))
  redis.call('ZADD', P .. 'ix:succeeded:' .. lane, unpack(ix))
  redis.call('ZADD', P .. 'done', unpack(done))
end
local popped = redis.call('ZPOPMIN', P .. 'rq:' .. lane, want)
local leased = {}
for k = 1, #popped, 2 do
  local id = popped[k]
  local v = redis.call('HMGET', KN .. id, 'st', 'm', 'at', 'tl', 'd')
  local at = tostring((tonumber(v[3]) or 0) + 1)
  local tk = worker .. ':' .. at .. ':' .. now
  redis.call('HSET', KN .. id, 'st', 'active', 'tl', v[4] .. 'active,' .. now .. ',' .. at .. ',' .. worker .. '|', 'at', at, 'tk', tk)
  leased[#leased + 1], leased[#leased + 2] = deadline, id
  ev[#ev + 1] = id .. '\31ready\31active\31' .. now .. '\31' .. at .. '\31' .. worker
  local j = #out
  out[j + 1], out[j + 2], out[j + 3], out[j + 4], out[j + 5], out[j + 6] = id, v[2], at, tk, v[5], now
end
if #leased > 0 then redis.call('ZADD', P .. 'active', unpack(leased)) end
local n = #popped / 2
if n > 0 then redis.call('HINCRBY', P .. 'counts', 'ready|' .. lane, 0 - n) end
if n ~= ok then redis.call('HINCRBY', P .. 'counts', 'active|' .. lane, n - ok) end
if ok > 0 then redis.call('HINCRBY', P .. 'counts', 'succeeded|' .. lane, ok) end
if #ev > 0 then redis.call('XADD', P .. 'events', 'MAXLEN', '~', '20000', '*', 'e', table.concat(ev, '\n')) end
return out
