-- lib/5-commit.lua — writing what a call accumulated, once, at its end.

-- commit writes everything the script accumulated: set memberships,
-- counters, flow completion, wake-ups, minute stats and one event entry.
local function commit()
  for f, d in pairs(LEFT) do
    local left
    local new = NEWFLOW[f]
    if new == true then
      left = d
      redis.call('HSET', KFM .. f, 'left', d, 'ca', NOW)
    elseif new then -- a fresh flow ID: its node count too
      left = d
      redis.call('HSET', KFM .. f, 'n', new, 'left', d, 'ca', NOW)
    else
      left = redis.call('HINCRBY', KFM .. f, 'left', d)
    end
    if left == 0 then -- its score in the done set is when it finished
      zop(DONE, f, NOWS)
    elseif d > 0 and not NEWFLOW[f] then
      zop(DONE, f, false)
    end
  end
  for lk, r in pairs(READY) do
    for _, n in ipairs(r) do
      if n.fresh and n.st == 'ready' then zop(readyKey(lk), n.id, exact(n.rs)) end
    end
  end
  READY = {}
  flushZ()
  flushNodes()
  for k, d in pairs(COUNTS) do
    if d ~= 0 then redis.call('HINCRBY', KCOUNTS, k, d) end
  end
  -- wake-up tokens for idle runners: at most 16 wait in a queue's list, so
  -- while every runner is busy an enqueue costs one LLEN here
  for lk, k in pairs(WAKE) do
    if k > 0 and not DRAINED[lk] then -- k: made ready here, not claimed here
      local key = KWAKE .. lk
      local room = 16 - redis.call('LLEN', key)
      if room > 0 then
        local tokens = {}
        for i = 1, math.min(k, room) do tokens[i] = '1' end
        redis.call('LPUSH', key, unpack(tokens))
      end
    end
  end
  for key, n in pairs(RATE) do
    local per = RATE[key .. '\0per']
    if per and n > 0 then
      redis.call('SET', key, n, 'PX', per * 2)
    end
  end
  if #EVENTS > 0 then
    -- An entry's ID counts the events written so far (it starts past the
    -- clock, above the IDs of a stream an older Trellis wrote by time), so
    -- MINID keeps about the last KEEPEVENTS events, however many each
    -- entry holds.
    local seq = redis.call('INCRBY', KEVSEQ, #EVENTS)
    if seq == #EVENTS then
      seq = NOW + #EVENTS
      redis.call('SET', KEVSEQ, seq)
    end
    local text, cut = table.concat(EVENTS, '\n'), string.format('%d', seq - KEEPEVENTS)
    local ok = redis.pcall('XADD', KEVENTS, 'MINID', cut, string.format('%d', seq) .. '-1', 'e', text)
    if type(ok) == 'table' and ok.err then
      -- the stream's last ID is ahead (an older Trellis wrote IDs by time
      -- on a clock ahead): go on from it
      local id = redis.call('XADD', KEVENTS, 'MINID', cut, '*', 'e', text)
      redis.call('SET', KEVSEQ, string.match(id, '^(%d+)'))
    end
  end
end
