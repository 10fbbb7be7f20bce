-- enqueue.lua — write validated graphs, each one all or nothing. Several
-- flows share one call when a client coalesces concurrent enqueues.
-- KEYS[1]  namespace prefix
-- ARGV     now, flow count, then per flow: flow id, single ("1" for a
--          one-node flow keyed by its node), node count, then the nodes as
--          insert() in lib.lua reads them.
-- Returns  one reply per flow, in order: {'ok', state...} (see insert) |
--          {'conflict', id} | {'unknown', id, parent}. The first flow that
--          fails validation is not written and ends the call: the flows
--          after it get no reply and were not written either.
local flows = tonumber(ARGV[2])
local i = 3
local replies = {}
for _ = 1, flows do
  local res, nexti = insert(ARGV[i], ARGV[i + 1] == '1', i + 3, tonumber(ARGV[i + 2]))
  replies[#replies + 1] = res
  if res[1] ~= 'ok' then break end
  i = nexti
end
commit()
return replies
