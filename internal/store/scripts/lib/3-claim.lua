-- lib/3-claim.lua — claiming: the lanes a runner serves, their limits
-- and pauses, and the leases it takes.

-- flushZ writes the sorted-set changes zop() recorded, each key's in order.
local function flushZ()
  for key, runs in pairs(ZOPS) do
    for _, run in ipairs(runs) do
      local n = #run
      if run.add then
        for i = 1, n, 1000 do redis.call('ZADD', key, unpack(run, i, math.min(i + 999, n))) end
      else
        for i = 1, n, 500 do redis.call('ZREM', key, unpack(run, i, math.min(i + 499, n))) end
      end
    end
  end
  ZOPS = {}
end

-- The control hash holds the paused queues ("p:"..queue) and the limits
-- per message type ("t:"..type -> "concurrency|rate|per ms", 0 = unlimited),
-- read once per claim. Concurrency counts the type's active nodes in the
-- queue (from the counters, plus this call's changes); rate counts claims in
-- the current window of per ms.
local RATE         -- rate window key -> claims made in this call
local function control()
  local raw = redis.call('HGETALL', KCTL)
  if #raw == 0 then return nil, {} end
  local lim, paused = nil, {}
  for i = 1, #raw, 2 do
    local kind, name = string.sub(raw[i], 1, 2), string.sub(raw[i], 3)
    if kind == 'p:' then
      paused[name] = true
    elseif kind == 't:' then
      local c, r, per = string.match(raw[i + 1], '^(%d+)|(%d+)|(%d+)$')
      if c then
        lim = lim or {}
        lim[name] = {c = tonumber(c), r = tonumber(r), per = tonumber(per)}
      end
    end
  end
  return lim, paused
end

-- room is how many nodes of type ty may start now in queue q, at most
-- want: its concurrency limit less its active nodes, and what is left of
-- its rate window (rate, the window's key, when it has one).
local function room(lim, q, ty, want)
  local l = lim and lim[ty]
  if not l then return want end
  if l.c > 0 then
    local k = 'active|' .. q .. '|' .. ty
    local active = (tonumber(redis.call('HGET', KCOUNTS, k)) or 0) + (COUNTS[k] or 0)
    want = math.min(want, l.c - active)
  end
  local rate
  if l.r > 0 and l.per > 0 then
    rate = KRATE .. ty .. ':' .. math.floor(NOW / l.per)
    local used = RATE[rate]
    if not used then
      used = tonumber(redis.call('GET', rate)) or 0
      RATE[rate] = used
    end
    RATE[rate .. '\0per'] = l.per
    want = math.min(want, l.r - used)
  end
  return want, rate
end

-- take leases ready node n to worker and appends it to out: id, meta,
-- attempt, token, data and the time it became ready (from its score in the
-- ready set, see membership). A node made ready by a caller whose clock is
-- ahead of this one's (another machine, or a test's fake clock moved while
-- this call was on its way) starts, in its timeline, when it became ready,
-- not before.
local READYAT -- ready-set score -> the ready time in it
local TOKENS  -- worker -> attempt -> lease token (see take)
local function take(n, score, worker, leaseMs, out)
  if n.d == nil then n.d = redis.call('HGET', KN .. n.id, 'd') end
  local readyAt, when = NOWS, nil -- made ready in this call
  if score then -- popped: its score as Redis replied it
    local k = score -- a score stands for one priority and one time
    readyAt = READYAT[k]
    if not readyAt then
      readyAt = string.format('%d', tonumber(score) - (1000 - n.pr) * PRIO + EPOCH)
      READYAT[k] = readyAt
    end
    -- decimal strings without leading zeros: the longer, or the greater
    -- of the same length, is the later time
    if #readyAt > #NOWS or (#readyAt == #NOWS and readyAt > NOWS) then when = readyAt end
  end
  n.at = n.at + 1
  -- a lease token is worker:attempt:now, the same for every node of an
  -- attempt this call leases to worker: made once
  local byAt = TOKENS[worker]
  if not byAt then byAt = {}; TOKENS[worker] = byAt end
  local tk = byAt[n.at]
  if not tk then tk = worker .. ':' .. itos(n.at) .. ':' .. NOWS; byAt[n.at] = tk end
  move(n, 'active', worker, {'at', itos(n.at), 'tk', tk}, exact(NOW + leaseMs), when)
  local k = #out
  out[k + 1], out[k + 2], out[k + 3], out[k + 4], out[k + 5], out[k + 6] = n.id, n.m, n.at, tk, n.d, readyAt
end

-- fresh returns lane lk's nodes made ready in this call, best first.
local function fresh(lk)
  local r, list = READY[lk], {}
  if not r then return list end
  local sorted, last = true, 0
  for _, n in ipairs(r) do
    if n.fresh and n.st == 'ready' then
      list[#list + 1] = n
      if n.rs < last then sorted = false end
      last = n.rs
    end
  end
  if not sorted then -- priorities differ
    for k, n in ipairs(list) do n.seq = k end
    table.sort(list, function(a, b) if a.rs ~= b.rs then return a.rs < b.rs end return a.seq < b.seq end)
  end
  return list
end

-- lanes returns queue q's lanes of the given types that have ready nodes
-- and room to start some (see room), from the per-state counters.
local function lanes(q, types, want, lim)
  local fields = {}
  for i, ty in ipairs(types) do fields[i] = 'ready|' .. q .. '|' .. ty end
  local have = redis.call('HMGET', KCOUNTS, unpack(fields))
  local out = {}
  for i, ty in ipairs(types) do
    if (tonumber(have[i]) or 0) + (COUNTS[fields[i]] or 0) > 0 then
      local lk = q .. '|' .. ty
      local r, rate = room(lim, q, ty, want)
      if r > 0 then
        out[#out + 1] = {lk = lk, room = r, rate = rate, new = fresh(lk), j = 1}
      end
    end
  end
  return out
end

-- claimQueue takes up to want ready nodes of queue q whose types are
-- among types, best first across their lanes (priority, then time), and
-- leases them to worker (see take). It merges each lane's ready set with
-- the nodes made ready earlier in this call, so a completion hands the
-- children it released straight to the next claim. One lane is popped
-- (ZPOPMIN; what is not taken goes back); several are peeked (ZRANGE), and
-- what is taken leaves its set at commit. It returns want less the nodes
-- taken.
local function claimQueue(q, types, want, lim, worker, leaseMs, out)
  for _ = 1, 4 do -- again only if nodes no longer ready were in the way
    local ls = lanes(q, types, want, lim)
    if #ls == 0 then break end
    local pop = #ls == 1
    for _, l in ipairs(ls) do
      local got
      if pop then
        got = redis.call('ZPOPMIN', readyKey(l.lk), l.room)
      else
        got = redis.call('ZRANGE', readyKey(l.lk), 0, l.room - 1, 'WITHSCORES')
      end
      l.set, l.i = got, 1
      if #got < 2 * l.room then DRAINED[l.lk] = true end
    end
    local stale = false
    while want > 0 do
      -- the lane whose best node is best
      local best, bscore, bset
      for _, l in ipairs(ls) do
        if l.room > 0 then
          if l.i <= #l.set then
            local sc = tonumber(l.set[l.i + 1])
            if not bscore or sc < bscore then best, bscore, bset = l, sc, true end
          end
          local f = l.new[l.j]
          if f and (not bscore or f.rs < bscore) then best, bscore, bset = l, f.rs, false end
        end
      end
      if not best then break end
      local n, score
      if bset then
        local id = best.set[best.i]
        score = best.set[best.i + 1]
        best.i = best.i + 2
        n = loadClaim(id)
        if n and n.st == 'ready' then
          if pop then n.popped = true end -- ZPOPMIN already took it out of the set
        else
          if not pop then zop(readyKey(best.lk), id, false) end
          n, stale = nil, true
        end
      else
        n = best.new[best.j]
        best.j = best.j + 1
        WAKE[best.lk] = WAKE[best.lk] - 1
      end
      if n then
        take(n, score, worker, leaseMs, out)
        want, best.room = want - 1, best.room - 1
        if best.rate then RATE[best.rate] = RATE[best.rate] + 1 end
      end
    end
    for _, l in ipairs(ls) do
      if pop and l.i <= #l.set then -- popped but not taken: back in its place
        local held = {}
        for k = l.i, #l.set, 2 do
          held[#held + 1] = l.set[k + 1]
          held[#held + 1] = l.set[k]
        end
        for k = 1, #held, 1000 do redis.call('ZADD', readyKey(l.lk), unpack(held, k, math.min(k + 999, #held))) end
      end
      if l.i <= #l.set or l.j <= #l.new then DRAINED[l.lk] = nil end
    end
    if want <= 0 or not stale then break end
    flushZ()
  end
  return want
end

-- claim takes up to want ready nodes of the given types from the queues,
-- in order (see claimQueue); nodes of paused queues, and of types at
-- their limit, stay ready.
local function claim(queues, types, want, worker, leaseMs, out)
  flushZ()
  local lim, paused = control()
  for _, q in ipairs(queues) do
    if want <= 0 then break end
    if not paused[q] then want = claimQueue(q, types, want, lim, worker, leaseMs, out) end
  end
  return want
end
