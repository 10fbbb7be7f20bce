-- floor_enqueue.lua — the bare job queue of the floor measurement (see
-- floor.go): one hash per job and one ready sorted set, nothing else.
-- KEYS[1] prefix · ARGV now, then per job: id, data
local P, now = KEYS[1], ARGV[1]
local add = {}
for i = 2, #ARGV, 2 do
  redis.call('HSET', P .. ARGV[i], 'st', 'ready', 'd', ARGV[i + 1], 'at', '0')
  add[#add + 1] = now
  add[#add + 1] = ARGV[i]
end
redis.call('ZADD', P .. 'ready', unpack(add))
return #add / 2
