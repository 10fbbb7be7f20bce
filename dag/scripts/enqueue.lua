-- enqueue.lua — write a validated graph (or one node) atomically.
-- KEYS[1]  namespace prefix
-- ARGV     now, flow id, single ("1" for a one-node flow keyed by its node),
--          node count, then the nodes as insert() in lib.lua reads them.
-- Returns  {'ok', id, state, existed, ...} | {'conflict', id} | {'unknown', id, parent}
local res = insert(ARGV[2], ARGV[3] == '1', 5, tonumber(ARGV[4]))
if res[1] == 'ok' then commit() end
return res
