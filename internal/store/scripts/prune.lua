-- prune.lua — take stale entries out of the state indexes.
-- KEYS[1]  namespace prefix
-- ARGV     now (unused), then pairs: an index's key after the prefix, a node ID
-- An entry is stale when its node is gone or in another state than the
-- index's: a Trellis without the indexes moved or deleted it (during a
-- rolling deploy). An entry still in its node's state stays.
-- Returns  {how many entries it removed}
local removed = 0
for i = 2, #ARGV - 1, 2 do
  local key, id = ARGV[i], ARGV[i + 1]
  local st = string.match(key, '^ix:([a-z]+):')
  if st and INDEXED[st] and redis.call('HGET', KN .. id, 'st') ~= st then
    removed = removed + redis.call('ZREM', P .. key, id)
  end
end
return {removed}
