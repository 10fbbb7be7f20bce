-- lib/4-maintenance.lua — what runners do a few times a second: promote
-- due delayed nodes, recover expired leases, migrate an older Trellis's
-- ready sets, and delete finished flows (retention, Trim, Remove).

-- promote moves delayed nodes whose time has come to ready.
local function promote(limit)
  local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local n = load(id)
    if n and n.st == 'delayed' then move(n, 'ready') else zop(DELAYED, id, false) end
  end
end

-- recover hands nodes whose lease expired back to ready, or fails them once
-- they stalled more than stallLimit times.
local function recover(limit, stallLimit)
  local expired = redis.call('ZRANGEBYSCORE', ACTIVE, '-inf', NOW, 'LIMIT', 0, limit)
  for _, id in ipairs(expired) do
    local n = load(id)
    if n and n.st == 'active' then
      n.sl = n.sl + 1
      if n.sl > stallLimit then
        finish(n, 'failed', 'stalled ' .. n.sl .. ' times (lease expired)', nil, {'sl', n.sl})
      else
        move(n, 'ready', nil, {'sl', n.sl, 'tk', ''})
      end
    else
      zop(ACTIVE, id, false)
    end
  end
end

-- migrate moves the nodes an older Trellis left in a queue's one ready set
-- ("q:"..queue..":ready") into their lanes, up to limit per queue, so a
-- rolling upgrade loses none.
local function migrate(queues, limit)
  for _, q in ipairs(queues) do
    local old = redis.call('ZPOPMIN', KOLDQ .. q .. ':ready', limit)
    for k = 1, #old, 2 do
      local n = load(old[k])
      if n and n.st == 'ready' then zop(readyKey(n.lk), n.id, old[k + 1]) end
    end
  end
end

-- DROPMAX bounds the nodes one call deletes: Redis serves no one else
-- while a script runs (some 10–15 µs per node deleted), so a finished flow
-- larger than that is deleted over several calls (a runner makes them
-- back to back, see sync.lua). SPOP takes that many
-- nodes off its member set, and the flow stays in the done set, where the
-- next trim finds it first, until its last node is gone.
local DROPMAX = 10000

-- drop deletes finished flows, given as members of the done set (a
-- single-node flow's member is SEP..id), with their nodes and counters,
-- DROPMAX nodes at most. It returns how many flows it deleted whole and
-- whether work is left (a flow deleted in part, victims not reached).
local function drop(victims)
  local dels, budget, gone, more = {}, DROPMAX, 0, false
  for _, f in ipairs(victims) do
    if budget <= 0 then
      more = true
      break
    end
    local members, whole = nil, true
    if string.sub(f, 1, 1) == SEP then
      members = {string.sub(f, 2)}
    else
      local key = KF .. f
      members = redis.call('SPOP', key, budget) -- a small flow: all of it
      if #members == budget and redis.call('SCARD', key) > 0 then
        whole, more = false, true
      else
        dels[#dels + 1] = key
        dels[#dels + 1] = KFM .. f
      end
    end
    for _, id in ipairs(members) do
      local n = load(id)
      if n then
        forget(n)
        n.w = nil -- deleted: nothing to write
      end
      dels[#dels + 1] = KN .. id
      NODES[id] = nil
    end
    budget = budget - #members
    if whole then
      zop(DONE, f, false)
      gone = gone + 1
    end
  end
  for i = 1, #dels, 500 do redis.call('UNLINK', unpack(dels, i, math.min(i + 499, #dels))) end
  return gone, more
end

-- trim deletes finished flows beyond the retention age and count, at most
-- limit of them (see drop: it returns the flows deleted whole, and whether
-- work is left).
local function trim(maxAgeMs, maxCount, limit)
  local victims = {}
  if maxAgeMs > 0 then
    victims = redis.call('ZRANGEBYSCORE', DONE, '-inf', NOW - maxAgeMs, 'LIMIT', 0, limit)
  end
  if maxCount >= 0 and #victims < limit then
    local excess = redis.call('ZCARD', DONE) - #victims - maxCount
    if excess > 0 then
      local more = redis.call('ZRANGE', DONE, #victims, #victims + math.min(excess, limit - #victims) - 1)
      for _, f in ipairs(more) do victims[#victims + 1] = f end
    end
  end
  return drop(victims)
end
