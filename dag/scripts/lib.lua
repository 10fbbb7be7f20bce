-- lib.lua — shared by every script; the store prepends it when it loads one.
--
-- Conventions for every script:
--   KEYS[1]  the namespace prefix "trellis:{ns}:". It routes the call to the
--            namespace's Redis Cluster slot; every key a script touches is
--            derived from it and shares its hash tag.
--   ARGV[1]  the time in milliseconds since the Unix epoch, or '' for Redis's
--            own clock (TIME): leases, due times and retention are then
--            decided by one clock that every runner shares.
--
-- A node is one hash, P.."n:"..id, with the fields
--   st  state                       m   packed meta (see meta below)
--   pe  unfinished parents, read only while blocked
--   at  attempts started            h   identity hash (idempotency)
--   d   data blob, opaque to Lua
--   c   children, \31-separated; one with more than one parent is marked
--       by a leading \30 (see finish)
--   tl  timeline "state,ms,attempt[,worker]|"
--   tk  lease token while active    sl  stall count
--   r   result JSON                 er  last error JSON
--   sp  traceparent of the last run's span (when tracing is on)
--   lg  the step's own log records of its last reported run
--   why reason for a cancel/skip    cz  the node whose outcome caused it
--   ex  "1" once the node expanded into a sub-graph
--   xs  that sub-graph's sinks      xn  its nodes (both \31-separated)
-- Every state change goes through move(), which also keeps the ready, delayed
-- and active sets, the per-state counters, the flow's unfinished count, the
-- timeline and the event stream in agreement with st.
--
-- A script sees each node through one table per call (load() caches it) and
-- writes a node's changed fields with put(); commit() writes them, one HSET
-- per node however many times it moved. Nodes made ready during a call wait
-- in READY, so the same call's claim() can take them without a round trip
-- through the ready set.
--
-- The library is loaded once (as a Redis Functions library) or prepended to
-- each script (EVALSHA); either way every call starts with begin(), which
-- sets the call's arguments and empties the per-call state below. Nothing
-- outlives a call.
local P      -- the namespace prefix, KEYS[1]
local A      -- the call's ARGV
local NOW    -- ARGV[1] as a number
local NOWS   -- the same as a string: numbers convert slowly
local DONE   -- finished flows by time (one-node flows as SEP..id)
local ACTIVE, DELAYED -- leases and due times, by node
local FAILED          -- failed nodes by the time they failed
local SEP = '\31'
local FANIN = '\30' -- marks a child with more than one parent in a c list
-- Ready scores order by priority, then by time: (1000 - priority)·2^41 + ms
-- since EPOCH keeps both exact in a double for ~70 years.
local EPOCH = 1700000000000
local PRIO = 2199023255552

local EVENTS       -- transition lines, written by one XADD in commit()
-- The event stream is a recent-activity feed, bounded by events, not
-- entries: a call records its first MAXEVENTS transitions (one huge graph
-- or cancel records no more; each node's timeline is complete), and the
-- stream keeps the last KEEPEVENTS or so (see commit).
local MAXEVENTS, KEEPEVENTS = 1000, 20000
local ENDED        -- nodes this call made terminal
local COUNTS       -- "state|queue|type" -> delta
local LEFT         -- flow id -> delta of unfinished nodes
local ZOPS         -- sorted-set key -> {member -> score | false (remove)}
local WAKE         -- lane -> nodes made ready
local DRAINED      -- lane -> true once claim() emptied its ready set
local NODES        -- id -> the node's table, loaded or created in this call
local DIRTIED      -- nodes with fields to write at commit (in n.w)
local READY        -- lane -> nodes made ready in this call (not yet in the set)

-- split returns the IDs of a c list (without their marks).
local function split(s)
  local t = {}
  if not s or s == '' then return t end
  for part in string.gmatch(s, '\30?([^\31]+)') do t[#t + 1] = part end
  return t
end

local function zop(key, member, score)
  local t = ZOPS[key]
  if not t then t = {}; ZOPS[key] = t end
  t[member] = score
end

-- exact returns a sorted-set score as the exact decimal string Redis would
-- otherwise print for the number (%.17g, slow), once per value per call.
local SCORES
local function exact(x)
  local v = SCORES[x]
  if not v then v = string.format('%.0f', x); SCORES[x] = v end
  return v
end

-- itos is tostring for the small counts that go into strings (attempts):
-- Lua formats a number with sprintf each time.
local ITOS
local function itos(x)
  local v = ITOS[x]
  if not v then v = tostring(x); ITOS[x] = v end
  return v
end

-- A lane is a queue and a message type, "queue|type" ('|' is in no name):
-- each has its ready set and its wake-up list, so a runner claims only the
-- types it has steps for and is woken only for them.
local READYKEYS
local function readyKey(lk)
  local k = READYKEYS[lk]
  if not k then k = P .. 'rq:' .. lk; READYKEYS[lk] = k end
  return k
end

-- meta: flow, queue, type, policy, priority, delay ms, max attempts.
-- A flow of "-" means a single-node flow whose ID is the node's own.
local META = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$'

-- meta returns the fields a packed meta string gives. Nodes of one flow,
-- queue and type share their meta string, so it is parsed once per call.
-- The table is also the metatable of the nodes a call creates (see
-- created), so it holds the other fields' defaults too.
local METAS
local function meta(m)
  local mt = METAS[m]
  if not mt then
    local fl, q, ty, po, pr, dl, ma = string.match(m, META)
    mt = {
      fl = fl, q = q, ty = ty, po = po, pr = tonumber(pr), dl = tonumber(dl), ma = tonumber(ma),
      qt = '|' .. q .. '|' .. ty, lk = q .. '|' .. ty, single = (fl == '-'),
      pe = 0, at = 0, tk = '', tl = '', sl = 0, c = '',
    }
    mt.__index = mt
    METAS[m] = mt
  end
  return mt
end

-- node builds the table of a node read from Redis, from its state and
-- packed meta: every field its own, as the hot paths read them often.
local function node(id, st, m)
  local mt = meta(m)
  local n = {
    id = id, st = st, fl = mt.fl, q = mt.q, ty = mt.ty, po = mt.po,
    pr = mt.pr, dl = mt.dl, ma = mt.ma, qt = mt.qt, lk = mt.lk, single = mt.single,
    pe = 0, at = 0, tk = '', tl = '', sl = 0, c = '',
  }
  if n.single then n.fl = id end
  return n
end

-- created builds the table of a node this call writes: its own fields are
-- only those that differ from its meta's, which it reads through its
-- metatable. A large write keeps 100,000 of them alive to the end of the
-- call, and Lua's garbage collector walks every live table again on each
-- cycle: with parse's small tables, this cut the Redis time of a
-- 100,000-node enqueue by about a sixth (2.54 → 2.12 s and 2.71 → 2.25 s
-- at the median of alternating runs). Read often, as in the hot paths,
-- fields through a metatable cost more than they save (4–7% more Redis
-- time per claimed and completed job when node did the same).
local function created(id, m)
  local n = setmetatable({id = id}, meta(m))
  if n.single then n.fl = id end
  return n
end

-- load returns node id (its data blob too when data is set), or nil if it
-- does not exist. A node is read once per call; later loads return the same
-- table, with this call's changes. The field lists are literal because
-- unpack() is slow in Redis's Lua.
local REST = { -- the fields a hot-path load (loadClaim, loadDone) skipped
  claim = {'pe', 'tk', 'sl', 'ex', 'cz', 'c'},
  done = {'pe', 'sl', 'ex', 'cz'},
}
local function load(id, data)
  local n = NODES[id]
  if n then
    if n.part then -- read what the hot path skipped
      local rest = REST[n.part]
      n.part = nil
      local v = redis.call('HMGET', P .. 'n:' .. id, unpack(rest))
      for i, f in ipairs(rest) do
        local x = v[i]
        if f == 'pe' or f == 'sl' then x = tonumber(x) or 0
        elseif f == 'tk' or f == 'c' then x = x or '' end
        n[f] = x
      end
    end
    if data and n.d == nil then n.d = redis.call('HGET', P .. 'n:' .. id, 'd') end
    return n
  end
  local v
  if data then
    v = redis.call('HMGET', P .. 'n:' .. id, 'st', 'm', 'pe', 'at', 'tk', 'tl', 'sl', 'ex', 'cz', 'c', 'd')
  else
    v = redis.call('HMGET', P .. 'n:' .. id, 'st', 'm', 'pe', 'at', 'tk', 'tl', 'sl', 'ex', 'cz', 'c')
  end
  if not v[1] then return nil end
  n = node(id, v[1], v[2])
  n.m = v[2]
  n.pe, n.at, n.tk, n.tl = tonumber(v[3]) or 0, tonumber(v[4]) or 0, v[5] or '', v[6] or ''
  n.sl, n.ex, n.cz, n.c, n.d = tonumber(v[7]) or 0, v[8], v[9], v[10] or '', v[11]
  NODES[id] = n
  return n
end

-- loadClaim and loadDone read only what claiming a ready node and
-- reporting an active one need; the node's other fields are not to be used
-- before a load() of it, which reads them.
local function loadClaim(id)
  if NODES[id] then return load(id, true) end
  local v = redis.call('HMGET', P .. 'n:' .. id, 'st', 'm', 'at', 'tl', 'd')
  if not v[1] then return nil end
  local n = node(id, v[1], v[2])
  n.m, n.at, n.tl, n.d, n.part = v[2], tonumber(v[3]) or 0, v[4] or '', v[5], 'claim'
  NODES[id] = n
  return n
end

local function loadDone(id)
  if NODES[id] then return load(id) end
  local v = redis.call('HMGET', P .. 'n:' .. id, 'st', 'm', 'at', 'tk', 'tl', 'c')
  if not v[1] then return nil end
  local n = node(id, v[1], v[2])
  n.m, n.at, n.tk, n.tl, n.c, n.part = v[2], tonumber(v[3]) or 0, v[4] or '', v[5] or '', v[6] or '', 'done'
  NODES[id] = n
  return n
end

-- put records that field f of node n is now v; commit() writes it. The
-- pairs pile up in n.w: HSET applies them in order, so the last one wins.
local function put(n, f, v)
  local w = n.w
  if not w then
    w = {}
    n.w = w
    DIRTIED[#DIRTIED + 1] = n
  end
  w[#w + 1] = f
  w[#w + 1] = v
end

-- hset writes field/value pairs, avoiding unpack() for the common sizes.
local function hset(key, a)
  local k = #a
  if k == 4 then return redis.call('HSET', key, a[1], a[2], a[3], a[4]) end
  if k == 6 then return redis.call('HSET', key, a[1], a[2], a[3], a[4], a[5], a[6]) end
  if k == 8 then return redis.call('HSET', key, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]) end
  if k == 10 then return redis.call('HSET', key, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]) end
  if k == 12 then return redis.call('HSET', key, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12]) end
  if k == 14 then return redis.call('HSET', key, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14]) end
  return redis.call('HSET', key, unpack(a))
end

-- flushNodes writes the fields put() recorded, one HSET per node.
local function flushNodes()
  for _, n in ipairs(DIRTIED) do
    if n.w then
      hset(P .. 'n:' .. n.id, n.w)
      n.w = nil
    end
  end
  DIRTIED = {}
end

local function terminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'skipped' or st == 'cancelled'
end

local function count(st, n, d)
  local k = st .. n.qt
  COUNTS[k] = (COUNTS[k] or 0) + d
end

-- leave the set the old state kept the node in; enter the new one's
-- (ready, delayed, active and failed nodes have one).
-- A node made ready in this call waits in READY (n.fresh) until claim()
-- takes it or commit() adds it to the ready set.
local function membership(n, from, to, score)
  if from == 'ready' then
    if n.fresh then n.fresh = nil
    elseif not n.popped then zop(readyKey(n.lk), n.id, false) end
  elseif from == 'delayed' then zop(DELAYED, n.id, false)
  elseif from == 'active' then zop(ACTIVE, n.id, false)
  elseif from == 'failed' then zop(FAILED, n.id, false) end
  if to == 'ready' then
    n.fresh, n.popped, n.rs = true, nil, (1000 - n.pr) * PRIO + (NOW - EPOCH)
    local r = READY[n.lk]
    if not r then r = {}; READY[n.lk] = r end
    r[#r + 1] = n
    WAKE[n.lk] = (WAKE[n.lk] or 0) + 1
  elseif to == 'delayed' then zop(DELAYED, n.id, score)
  elseif to == 'active' then zop(ACTIVE, n.id, score)
  elseif to == 'failed' then zop(FAILED, n.id, NOWS) end
end

local NEWFLOW      -- flow id -> true (a fresh ID: its node count) for flows new in this call
-- unfinished counts n as d more unfinished nodes of its flow. A one-node
-- flow has no flow hash: it is done exactly when its node is.
local function unfinished(n, d)
  if n.single then
    if d < 0 then zop(DONE, SEP .. n.id, NOWS)
    elseif not n.created then zop(DONE, SEP .. n.id, false) end
    return
  end
  LEFT[n.fl] = (LEFT[n.fl] or 0) + d
end

-- move is the one write path for a state change. extra holds more HSET pairs;
-- score is the due time (delayed) or lease deadline (active); when, the
-- time the timeline and the event give the change (default NOW, see take).
local function move(n, to, worker, extra, score, when)
  local from = n.st
  local ts = when or NOWS
  membership(n, from, to, score)
  local at = itos(n.at)
  n.tl = n.tl .. to .. ',' .. ts .. ',' .. at .. (worker and (',' .. worker) or '') .. '|'
  n.st = to
  local w = n.w
  if not w then -- as put() would, in one table constructor
    w = {'st', to, 'tl', n.tl}
    n.w = w
    DIRTIED[#DIRTIED + 1] = n
  else
    w[#w + 1] = 'st'; w[#w + 1] = to
    w[#w + 1] = 'tl'; w[#w + 1] = n.tl
  end
  if extra then
    local k = #w
    for i = 1, #extra do w[k + i] = extra[i] end
  end
  count(from, n, -1)
  count(to, n, 1)
  if terminal(to) and not terminal(from) then
    unfinished(n, -1)
    ENDED = ENDED + 1
  end
  if terminal(from) and not terminal(to) then unfinished(n, 1) end
  if #EVENTS < MAXEVENTS then
    EVENTS[#EVENTS + 1] = n.id .. SEP .. from .. SEP .. to .. SEP .. ts .. SEP .. at .. SEP .. (worker or '')
  end
end

-- create writes a brand-new node in state st with its fields: m, h, d, pe,
-- at (pe and at only when not 0: missing reads as 0), and optionally c
-- (children) and why/cz (an outcome at enqueue).
local function create(n, st, m, h, d, pe, c, why, cz, score)
  n.st, n.tl, n.m, n.cz, n.created = st, st .. ',' .. NOWS .. ',0|', m, cz, true
  -- the rest as the metatable has them (see created): pe 0, c '', and the
  -- data left out (take reads it back if this call claims the node)
  if pe > 0 then n.pe = pe end
  if c then n.c = c end
  NODES[n.id] = n
  local key = P .. 'n:' .. n.id
  -- a missing pe or at reads as 0 (the loaders' "or 0", decodeNode)
  if why then
    redis.call('HSET', key, 'st', st, 'tl', n.tl, 'm', m, 'h', h, 'd', d, 'pe', itos(pe), 'c', c or '', 'why', why, 'cz', cz)
  elseif c and pe > 0 then
    redis.call('HSET', key, 'st', st, 'tl', n.tl, 'm', m, 'h', h, 'd', d, 'pe', itos(pe), 'c', c)
  elseif c then
    redis.call('HSET', key, 'st', st, 'tl', n.tl, 'm', m, 'h', h, 'd', d, 'c', c)
  elseif pe > 0 then
    redis.call('HSET', key, 'st', st, 'tl', n.tl, 'm', m, 'h', h, 'd', d, 'pe', itos(pe))
  else
    redis.call('HSET', key, 'st', st, 'tl', n.tl, 'm', m, 'h', h, 'd', d)
  end
  membership(n, nil, st, score)
  count(st, n, 1)
  if not terminal(st) then unfinished(n, 1) end
  if #EVENTS < MAXEVENTS then
    EVENTS[#EVENTS + 1] = n.id .. SEP .. SEP .. st .. SEP .. NOWS .. SEP .. '0' .. SEP
  end
end

local finish

-- counted counts a succeeded parent of child cid, a child of several
-- parents not read in this call, with one HINCRBY. It returns the child
-- when that was the last parent it waited for. pe is only read while a node
-- is blocked (and set whenever one becomes blocked), so a child that another
-- parent ended is left counted down; the key HINCRBY made for a child gone
-- with its flow is deleted.
local function counted(cid)
  local key = P .. 'n:' .. cid
  if redis.call('HINCRBY', key, 'pe', -1) > 0 then return nil end
  local c = load(cid, true)
  if not c then
    redis.call('UNLINK', key)
    return nil
  end
  if c.st == 'blocked' then return c end
  return nil
end

-- release runs a blocked node whose parents are all done.
local function release(n)
  if n.ex == '1' then
    finish(n, 'succeeded')
  elseif n.dl > 0 then
    move(n, 'delayed', nil, nil, NOW + n.dl)
  else
    move(n, 'ready')
  end
end

-- outcome applies a child's policy to one parent that ended in state st.
-- It returns nil when the child may still run, or the child's terminal state.
local function outcome(po, st)
  if st == 'succeeded' or po == 'ignore' then return nil end
  if po == 'skip' or st == 'skipped' then return 'skipped' end
  return 'cancelled'
end

-- ended moves node to terminal state st with the extra fields, its lease
-- token cleared and, when there is one, the reason (why, caused by node cz).
local function ended(node, st, why, cz, extra)
  local fields = extra or {}
  fields[#fields + 1] = 'tk'; fields[#fields + 1] = ''
  if why then
    fields[#fields + 1] = 'why'; fields[#fields + 1] = why
    fields[#fields + 1] = 'cz'; fields[#fields + 1] = cz
  end
  move(node, st, nil, fields)
end

-- finish makes n terminal and resolves its descendants by their policies,
-- iteratively (a cascade may be long).
finish = function(n, to, why, cause, extra)
  if n.c == '' and n.part ~= 'claim' then -- known to have no children: nothing to resolve
    return ended(n, to, why, cause or n.id, extra)
  end
  local work = {{n, to, why, cause, extra}}
  local doomed = {[n.id] = true}
  local i = 1
  while i <= #work do
    local w = work[i]
    i = i + 1
    local node, st = w[1], w[2]
    ended(node, st, w[3], w[4] or node.id, w[5])
    for mark, cid in string.gmatch(node.c, '(\30?)([^\31]+)') do
      if not doomed[cid] then
        local c, free -- free: c waits for no parent any more
        if mark == FANIN and st == 'succeeded' and not NODES[cid] then
          c = counted(cid)
          free = true
        else
          c = load(cid, true) -- with data: it may be claimed in this call
          if c and c.st == 'blocked' then
            local res
            if c.ex == '1' then
              if st == 'failed' or st == 'cancelled' then res = 'failed' end
            else
              res = outcome(c.po, st)
            end
            if res then
              doomed[cid] = true
              local reason = (c.ex == '1' and 'sub-graph node ' or 'parent ') .. node.id .. ' ' .. st
              work[#work + 1] = {c, res, reason, w[4] or node.id}
            else
              c.pe = c.pe - 1
              put(c, 'pe', itos(c.pe))
              free = c.pe <= 0
            end
          end
        end
        if c and free then
          if c.ex == '1' then
            doomed[cid] = true
            work[#work + 1] = {c, 'succeeded'}
          else
            release(c)
          end
        end
      end
    end
  end
end

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

local function flushZ()
  for key, members in pairs(ZOPS) do
    local add, rem = {}, {}
    for m, score in pairs(members) do
      if score then add[#add + 1] = score; add[#add + 1] = m else rem[#rem + 1] = m end
    end
    for i = 1, #rem, 500 do redis.call('ZREM', key, unpack(rem, i, math.min(i + 499, #rem))) end
    for i = 1, #add, 1000 do redis.call('ZADD', key, unpack(add, i, math.min(i + 999, #add))) end
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
  local raw = redis.call('HGETALL', P .. 'ctl')
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
    local active = (tonumber(redis.call('HGET', P .. 'counts', k)) or 0) + (COUNTS[k] or 0)
    want = math.min(want, l.c - active)
  end
  local rate
  if l.r > 0 and l.per > 0 then
    rate = P .. 'rate:' .. ty .. ':' .. math.floor(NOW / l.per)
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
local function take(n, score, worker, leaseMs, out)
  if n.d == nil then n.d = redis.call('HGET', P .. 'n:' .. n.id, 'd') end
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
  local tk = worker .. ':' .. itos(n.at) .. ':' .. NOWS
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
  local have = redis.call('HMGET', P .. 'counts', unpack(fields))
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

-- migrate moves the nodes an older Trellis left in a queue's one ready set
-- ("q:"..queue..":ready") into their lanes, up to limit per queue, so a
-- rolling upgrade loses none.
local function migrate(queues, limit)
  for _, q in ipairs(queues) do
    local old = redis.call('ZPOPMIN', P .. 'q:' .. q .. ':ready', limit)
    for k = 1, #old, 2 do
      local n = load(old[k])
      if n and n.st == 'ready' then zop(readyKey(n.lk), n.id, old[k + 1]) end
    end
  end
end

-- DROPMAX bounds the nodes one call deletes: Redis serves no one else
-- while a script runs (some 10–15 µs per node deleted), so a finished flow
-- larger than that is deleted over several calls (a runner makes them
-- back to back, see complete.lua). SPOP takes that many
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
      local key = P .. 'f:' .. f
      members = redis.call('SPOP', key, budget) -- a small flow: all of it
      if #members == budget and redis.call('SCARD', key) > 0 then
        whole, more = false, true
      else
        dels[#dels + 1] = key
        dels[#dels + 1] = P .. 'fm:' .. f
      end
    end
    for _, id in ipairs(members) do
      local n = load(id)
      if n then
        count(n.st, n, -1)
        if n.st == 'failed' then zop(FAILED, id, false) end
        n.w = nil -- deleted: nothing to write
      end
      dels[#dels + 1] = P .. 'n:' .. id
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

-- commit writes everything the script accumulated: set memberships,
-- counters, flow completion, wake-ups, minute stats and one event entry.
local function commit()
  for f, d in pairs(LEFT) do
    local left
    local new = NEWFLOW[f]
    if new == true then
      left = d
      redis.call('HSET', P .. 'fm:' .. f, 'left', d, 'ca', NOW)
    elseif new then -- a fresh flow ID: its node count too
      left = d
      redis.call('HSET', P .. 'fm:' .. f, 'n', new, 'left', d, 'ca', NOW)
    else
      left = redis.call('HINCRBY', P .. 'fm:' .. f, 'left', d)
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
    if d ~= 0 then redis.call('HINCRBY', P .. 'counts', k, d) end
  end
  -- wake-up tokens for idle runners: at most 16 wait in a queue's list, so
  -- while every runner is busy an enqueue costs one LLEN here
  for lk, k in pairs(WAKE) do
    if k > 0 and not DRAINED[lk] then -- k: made ready here, not claimed here
      local key = P .. 'wk:' .. lk
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
    local seq = redis.call('INCRBY', P .. 'evseq', #EVENTS)
    if seq == #EVENTS then
      seq = NOW + #EVENTS
      redis.call('SET', P .. 'evseq', seq)
    end
    local text, cut = table.concat(EVENTS, '\n'), string.format('%d', seq - KEEPEVENTS)
    local ok = redis.pcall('XADD', P .. 'events', 'MINID', cut, string.format('%d', seq) .. '-1', 'e', text)
    if type(ok) == 'table' and ok.err then
      -- the stream's last ID is ahead (an older Trellis wrote IDs by time
      -- on a clock ahead): go on from it
      local id = redis.call('XADD', P .. 'events', 'MINID', cut, '*', 'e', text)
      redis.call('SET', P .. 'evseq', string.match(id, '^(%d+)'))
    end
  end
end

-- expansion returns the sinks and the nodes of the sub-graph node n
-- expanded into (empty when it did not expand).
local function expansion(n)
  if n.ex ~= '1' then return {}, {} end
  if n.xs == nil then
    local v = redis.call('HMGET', P .. 'n:' .. n.id, 'xs', 'xn')
    n.xs, n.xn = v[1] or '', v[2] or ''
  end
  return split(n.xs), split(n.xn)
end

-- subgraph lists the nodes of n's expansion and, nested, of theirs.
local function subgraph(n)
  local _, list = expansion(n)
  local seen = {}
  for _, id in ipairs(list) do seen[id] = true end
  local k = 1
  while k <= #list do
    local s = load(list[k])
    if s then
      local _, sub = expansion(s)
      for _, id in ipairs(sub) do
        if not seen[id] then seen[id] = true; list[#list + 1] = id end
      end
    end
    k = k + 1
  end
  return list, seen
end

-- without returns the c list c without child id (marked or not).
local function without(c, id)
  local keep = {}
  for mark, cid in string.gmatch(c, '(\30?)([^\31]+)') do
    if cid ~= id then keep[#keep + 1] = mark .. cid end
  end
  return table.concat(keep, SEP)
end

-- cancelSubgraph cancels the unfinished nodes of n's expansion (nested
-- ones too), after n ended: they were n's work. Their descendants outside
-- it follow their policies.
local function cancelSubgraph(n, why)
  local list, seen = subgraph(n)
  for _, id in ipairs(list) do
    local s = load(id)
    if s and not terminal(s.st) then finish(s, 'cancelled', why, n.id) end
  end
  return list, seen
end

-- discard deletes the sub-graph n expanded into, nested ones too, before
-- n runs its step again (a retry of n): its unfinished nodes are cancelled
-- first, so what waits on them outside is resolved by its policy, and the
-- jobs they depended on outside forget them. n is no longer expanded.
local function discard(n)
  local list, gone = cancelSubgraph(n, 'its expansion was discarded: ' .. n.id .. ' runs again')
  local dels, members = {}, {}
  for _, id in ipairs(list) do
    local s = load(id, true)
    if s then
      count(s.st, s, -1)
      if s.st == 'failed' then zop(FAILED, id, false) end
      for _, p in ipairs(cjson.decode(s.d).p or {}) do
        local pn = not gone[p] and load(p)
        if pn then
          pn.c = without(pn.c, id)
          put(pn, 'c', pn.c)
        end
      end
      s.w = nil -- deleted: nothing to write
      NODES[id] = nil
      dels[#dels + 1] = P .. 'n:' .. id
      members[#members + 1] = id
    end
  end
  for i = 1, #dels, 500 do redis.call('UNLINK', unpack(dels, i, math.min(i + 499, #dels))) end
  for i = 1, #members, 500 do redis.call('SREM', P .. 'f:' .. n.fl, unpack(members, i, math.min(i + 499, #members))) end
  if #members > 0 then redis.call('HINCRBY', P .. 'fm:' .. n.fl, 'n', -#members) end
  n.ex, n.xs, n.xn = nil, '', ''
  put(n, 'ex', ''); put(n, 'xs', ''); put(n, 'xn', '')
end

-- insert writes new nodes into flow (single: one-node flows, each keyed by
-- its node; flow is then unused). The nodes start at ARGV[start], count of them, in topological order,
-- each as: id, fresh ("1": a generated ID that cannot exist yet), identity
-- hash, meta (queue, type, policy, priority, delay ms, max attempts), data,
-- #parents, parents..., #children, children...
-- (children within the batch, those of several parents marked with FANIN;
-- parents outside it are linked here).
-- It validates everything before it writes anything, and returns
-- {'ok', state...} in the nodes' order (a state prefixed with '=' for a node
-- that existed already) or {'conflict', id} or {'unknown', id, parent};
-- then the ARGV index after the nodes, and the nodes.
-- parse, check and write are its three steps; enqueue.lua's all-or-nothing
-- mode checks every flow of the call before it writes any.
local PLANNED      -- node id -> true: checked, to be written later in this call
local AGAIN        -- whether this call runs a second time (see check); nil: not known yet
local NONE = {}     -- an empty list that is never written to

-- parse reads the nodes into small tables {id, i, fresh, np, nc}; the rest
-- stays in ARGV, from the node's first index i: A[i + 2] its identity
-- hash, A[i + 3] its meta, A[i + 4] its data, its np parents from
-- A[i + 6] and its nc children from A[i + 7 + np] (see created for why
-- the tables are small).
local function parse(start, total) -- the nodes, by ID, and the ARGV index after them
  local nodes, byId = {}, {}
  local i = start
  for _ = 1, total do
    local np = tonumber(A[i + 5])
    local ci = i + 7 + np
    local nc = tonumber(A[ci - 1])
    local n = {id = A[i], i = i, fresh = A[i + 1] == '1', np = np, nc = nc}
    i = ci + nc
    nodes[#nodes + 1] = n
    byId[n.id] = n
  end
  return nodes, byId, i
end

-- check: identical re-enqueues are returned as they are, different ones
-- conflict; every parent outside the batch must exist (or be planned).
-- It returns nil when the nodes may be written.
local function check(nodes, byId)
  -- A generated ID cannot exist yet, unless this very call runs a second
  -- time: a client that timed out waiting for the reply sends it again
  -- (go-redis retries read timeouts). The call's first generated ID tells:
  -- once it exists, every node is checked like a re-enqueue, and nothing
  -- is written twice.
  if AGAIN == nil then
    for _, n in ipairs(nodes) do
      if n.fresh then
        AGAIN = redis.call('EXISTS', P .. 'n:' .. n.id) == 1
        break
      end
    end
  end
  -- one EXISTS per thousand nodes whose ID may be taken; each of them is
  -- read only when some exist (a re-enqueue)
  local keys, taken = NONE, AGAIN == true
  for _, n in ipairs(taken and NONE or nodes) do
    if not n.fresh then
      if keys == NONE then keys = {} end
      keys[#keys + 1] = P .. 'n:' .. n.id
    end
  end
  for k = 1, #keys, 1000 do
    if redis.call('EXISTS', unpack(keys, k, math.min(k + 999, #keys))) > 0 then taken = true; break end
  end
  for _, n in ipairs(taken and nodes or NONE) do
    local old = (n.fresh and not AGAIN) and {} or redis.call('HMGET', P .. 'n:' .. n.id, 'h', 'st')
    if old[2] then
      if old[1] ~= A[n.i + 2] then return {'conflict', n.id} end
      n.existing = true
      n.st = old[2]
    end
  end
  for _, n in ipairs(nodes) do
    if not n.existing then
      for k = n.i + 6, n.i + 5 + n.np do
        local p = A[k]
        if not byId[p] and not PLANNED[p] and redis.call('EXISTS', P .. 'n:' .. p) == 0 then return {'unknown', n.id, p} end
      end
    end
  end
  return nil
end

-- taken refuses a flow ID that another flow holds: a one-job flow is
-- keyed by its job's ID, so a flow of several jobs may not take that ID,
-- nor a one-job flow the ID of a flow of several. It returns
-- {'flowid', id} or nil.
local function taken(flow, single, nodes, fresh)
  if single then
    local keys = {}
    for _, n in ipairs(nodes) do
      if not n.fresh and not n.existing then keys[#keys + 1] = P .. 'fm:' .. n.id end
    end
    for k = 1, #keys, 1000 do
      if redis.call('EXISTS', unpack(keys, k, math.min(k + 999, #keys))) > 0 then
        for j = k, math.min(k + 999, #keys) do
          if redis.call('EXISTS', keys[j]) == 1 then return {'flowid', string.sub(keys[j], #P + 4)} end
        end
      end
    end
  elseif not fresh and redis.call('EXISTS', P .. 'fm:' .. flow) == 0 then
    local m = redis.call('HGET', P .. 'n:' .. flow, 'm')
    if m and string.sub(m, 1, 1) == '-' then return {'flowid', flow} end
  end
  return nil
end

-- cycle looks for a path from x, a node expanding into nodes, down to a
-- job outside the sub-graph that one of them depends on: the sub-graph's
-- sinks lead back to x, so the path would close a cycle. It returns
-- {'cycle', x, …, the job, the node depending on it} or nil.
local function cycle(x, nodes, byId)
  local outside, any = {}, false -- job -> the first node of nodes depending on it
  for _, n in ipairs(nodes) do
    if not n.existing then
      for k = n.i + 6, n.i + 5 + n.np do
        local p = A[k]
        if (not byId[p] or byId[p].existing) and not outside[p] then outside[p], any = n.id, true end
      end
    end
  end
  if not any then return nil end
  local from, queue, k = {[x.id] = false}, {x.id}, 1
  while k <= #queue do
    local id = queue[k]
    k = k + 1
    if outside[id] then
      local path = {outside[id]}
      while id do
        table.insert(path, 1, id)
        id = from[id]
      end
      table.insert(path, 1, 'cycle')
      return path
    end
    local n = load(id)
    if n then
      for _, c in ipairs(split(n.c)) do
        if from[c] == nil then
          from[c] = id
          queue[#queue + 1] = c
        end
      end
    end
  end
  return nil
end

local function write(flow, single, nodes, byId, fresh) -- fresh: a new flow ID
  local out = {'ok'}
  local members = {}
  local prefix = single and '-' or flow
  for _, n in ipairs(nodes) do
    if not n.existing then
      local m = prefix .. SEP .. A[n.i + 3]
      local node = created(n.id, m)
      if not single then node.fl = flow end
      local pe, res, why, cz = 0, nil, nil, nil
      for k = n.i + 6, n.i + 5 + n.np do
        local p = A[k]
        local inBatch = byId[p] and not byId[p].existing
        local st, pcause
        local pn
        if inBatch then
          st, pcause = byId[p].st, byId[p].cz
        else
          pn = load(p)
          st, pcause = pn.st, pn.cz
        end
        if terminal(st) then
          local r = outcome(node.po, st)
          if r and res ~= 'cancelled' then
            res, why = r, 'parent ' .. p .. ' ' .. st
            cz = (st == 'failed') and p or (pcause or p)
          end
        else
          pe = pe + 1
        end
        -- the edge is recorded even when the parent has ended: a retry of
        -- the parent finds the children it released or doomed
        if not inBatch then
          local cid = (n.np > 1) and (FANIN .. n.id) or n.id
          pn.c = (pn.c == '') and cid or (pn.c .. SEP .. cid)
          put(pn, 'c', pn.c)
        end
      end
      local st
      if res then st = res elseif pe > 0 then st = 'blocked' elseif node.dl > 0 then st = 'delayed' else st = 'ready' end
      local ci = n.i + 7 + n.np
      local children = (n.nc > 0) and table.concat(A, SEP, ci, ci + n.nc - 1) or nil
      create(node, st, m, A[n.i + 2], A[n.i + 4], pe, children, res and why, cz,
        (st == 'delayed') and (NOW + node.dl) or nil)
      n.st, n.cz = st, cz
      members[#members + 1] = n.id
    end
    out[#out + 1] = n.existing and ('=' .. n.st) or n.st
  end
  if not single and #members > 0 then
    for k = 1, #members, 1000 do
      redis.call('SADD', P .. 'f:' .. flow, unpack(members, k, math.min(k + 999, #members)))
    end
    -- a new flow gets its node count (when fresh), creation time and
    -- unfinished count in commit()
    if fresh then
      NEWFLOW[flow] = #members
    elseif redis.call('HINCRBY', P .. 'fm:' .. flow, 'n', #members) == #members then
      NEWFLOW[flow] = true
    end
  end
  if not single and #members > 0 then LEFT[flow] = LEFT[flow] or 0 end
  return out
end

local function insert(flow, single, start, total, fresh) -- also returns the ARGV index after the nodes
  local nodes, byId, nexti = parse(start, total)
  local bad = check(nodes, byId) or taken(flow, single, nodes, fresh)
  if bad then return bad, nexti, nodes end
  return write(flow, single, nodes, byId, fresh), nexti, nodes
end

-- begin starts a call: its KEYS and ARGV, and empty per-call state.
local function begin(keys, argv)
  P, A = keys[1], argv
  if argv[1] == '' then -- the shared clock: Redis's own, not the caller's
    if redis.replicate_commands then redis.replicate_commands() end
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    NOWS = string.format('%d', NOW)
  else -- a clock the caller injected (tests, flowtest)
    NOW, NOWS = tonumber(argv[1]), argv[1]
  end
  DONE, ACTIVE, DELAYED, FAILED = P .. 'done', P .. 'active', P .. 'delayed', P .. 'failed'
  EVENTS, ENDED, COUNTS, LEFT, ZOPS, WAKE, DRAINED = {}, 0, {}, {}, {}, {}, {}
  NODES, DIRTIED, READY, NEWFLOW, RATE, PLANNED, AGAIN = {}, {}, {}, {}, {}, {}, nil
  SCORES, ITOS, READYKEYS, METAS, READYAT = {}, {}, {}, {}, {}
end
