-- enqueue.lua — write validated graphs, each one all or nothing. Several
-- flows share one call when a client coalesces concurrent enqueues, or when
-- it adds a bulk of jobs.
-- KEYS[1]  namespace prefix
-- ARGV     now, flow count, mode, then per flow: flow id, kind ("1":
--          one-node flows, each keyed by its node, one or several of them
--          (a list of jobs from a bulk), the flow id unused; "n": a new
--          flow, its ID just generated; "0": any other), node count, then
--          the nodes as insert() in lib/7-insert.lua reads them.
--          mode "each": every flow is checked and written on its own; the
--          first flow that fails its check ends the call, and the flows
--          after it are not written.
--          mode "all": every flow is checked before any is written; one
--          failure writes nothing (the flows before it reply
--          {'unwritten'}). Node IDs must not repeat across flows.
-- Returns  one reply per flow, in order: {'ok', state...} (see insert) |
--          {'conflict', id} | {'unknown', id, parent} | {'flowid', id} (a
--          flow ID another flow holds, see taken); a call that ended
--          early has no replies for the flows after the failed one.
local flows, mode = tonumber(ARGV[2]), ARGV[3]
local i = 4
local replies = {}
if mode == 'all' then
  local parsed = {}
  for f = 1, flows do
    local nodes, byId, nexti = parse(i + 3, tonumber(ARGV[i + 2]))
    local bad = check(nodes, byId) or taken(ARGV[i], ARGV[i + 1] == '1', nodes, ARGV[i + 1] == 'n')
    if bad then
      for k = 1, f - 1 do replies[k] = {'unwritten'} end
      replies[f] = bad
      return replies
    end
    for _, n in ipairs(nodes) do PLANNED[n.id] = true end
    parsed[f] = {ARGV[i], ARGV[i + 1], nodes, byId}
    i = nexti
  end
  for f, p in ipairs(parsed) do replies[f] = write(p[1], p[2] == '1', p[3], p[4], p[2] == 'n') end
else
  for _ = 1, flows do
    local res, nexti = insert(ARGV[i], ARGV[i + 1] == '1', i + 3, tonumber(ARGV[i + 2]), ARGV[i + 1] == 'n')
    replies[#replies + 1] = res
    if res[1] ~= 'ok' then break end
    i = nexti
  end
end
commit()
return replies
