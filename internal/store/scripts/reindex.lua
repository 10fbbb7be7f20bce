-- reindex.lua — put nodes into their state's index where they are missing
-- (nodes a Trellis without the state indexes wrote or moved).
-- KEYS[1]  namespace prefix
-- ARGV     now, then node IDs
-- A node goes in at the time of its timeline's last entry (now when it has
-- none); a node already there, or in a state without an index, is left.
-- Returns  {how many nodes it added}
local added = 0
for i = 2, #ARGV do
  local n = load(ARGV[i])
  if n and INDEXED[n.st] then
    local last = string.match(n.tl, '([^|]*)|$') or ''
    local at = string.match(last, '^[^,]*,(%d+)') or NOWS
    added = added + redis.call('ZADD', ixKey(n.st, n.lk), 'NX', at, n.id)
  end
end
return {added}
