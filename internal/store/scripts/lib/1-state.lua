-- lib/ — shared by every script: its parts, joined in the order of their
-- names, come before each script's body (dag/scripts.go). This part,
-- lib/1-state.lua, holds the per-call state, the node tables and move(),
-- the one write path for a state change.
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
--   tl  timeline "state,ms,attempt[,worker[,batch]]|" (batch: on the
--       change out of active of a batch step's run)
--   tk  lease token while active    sl  stall count
--   r   result JSON                 er  last error JSON
--   sp  traceparent of the last run's span (when tracing is on)
--   lg  the step's own log records of its last reported run
--   bt  the batch that run was part of (a batch step's)
--   eh  the errors of the attempts since enqueue or the last retry by
--       hand, oldest first, \31-separated, the last ERRORS kept
--   why reason for a cancel/skip    cz  the node whose outcome caused it
--   ex  "1" once the node expanded into a sub-graph
--   xs  that sub-graph's sinks      xn  its nodes (both \31-separated)
-- Every state change goes through move(), which also keeps the ready, delayed
-- and active sets, the state indexes (INDEXED), the per-state counters, the
-- flow's unfinished count, the timeline and the event stream in agreement
-- with st.
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
-- Every key name the scripts use is built from these, set in begin() and
-- nowhere else; dag/keys.go builds the same names (TestLuaKeysMatchGo).
-- The K…s ending in a colon are prefixes a node, flow, lane or type
-- completes.
local KN, KF, KFM          -- node hash, flow's member set, flow's meta hash: ..id
local KLANE, KWAKE, KOLDQ  -- a lane's ready set and wake-up list: ..'queue|type'; 'q:'..queue..':ready' (an older Trellis's)
local KRATE                -- a type's rate window: ..type..':'..window
local KIX                  -- a state's index of a lane: ..state..':'..'queue|type'
local KCOUNTS, KCTL, KEVENTS, KEVSEQ, KRUNNERS, KRINFO
local A      -- the call's ARGV
local NOW    -- ARGV[1] as a number
local NOWS   -- the same as a string: numbers convert slowly
local DONE   -- finished flows by time (one-node flows as SEP..id)
local ACTIVE, DELAYED -- leases and due times, by node
-- INDEXED are the states listed from indexes of their own, one sorted set
-- per state and lane (KIX..state..':'..lane) scored by when the node
-- entered the state; ready, delayed and active nodes are listed from the
-- sets the engine works from.
local INDEXED = {blocked = true, succeeded = true, failed = true, skipped = true, cancelled = true}
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
local ZOPS         -- sorted-set key -> its changes, in order (see zop)
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

-- zop records that member enters sorted set key with score, or leaves it
-- (score false); flushZ() writes the changes. A key keeps them in order, as
-- runs of additions ({add = true, score, member, ...}) and of removals
-- ({member, ...}): applied in order, a member's last change wins, and each
-- run is one ZADD or ZREM.
local function zop(key, member, score)
  local t = ZOPS[key]
  if not t then t = {}; ZOPS[key] = t end
  local run = t[#t]
  if score then
    if not run or not run.add then run = {add = true}; t[#t + 1] = run end
    local k = #run
    run[k + 1], run[k + 2] = score, member
  else
    if not run or run.add then run = {}; t[#t + 1] = run end
    run[#run + 1] = member
  end
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
  if not k then k = KLANE .. lk; READYKEYS[lk] = k end
  return k
end

-- ixKey is the index of state st's nodes of lane lk (see INDEXED).
local IXKEYS
local function ixKey(st, lk)
  local t = IXKEYS[st]
  if not t then t = {}; IXKEYS[st] = t end
  local k = t[lk]
  if not k then k = KIX .. st .. ':' .. lk; t[lk] = k end
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
      local v = redis.call('HMGET', KN .. id, unpack(rest))
      for i, f in ipairs(rest) do
        local x = v[i]
        if f == 'pe' or f == 'sl' then x = tonumber(x) or 0
        elseif f == 'tk' or f == 'c' then x = x or '' end
        n[f] = x
      end
    end
    if data and n.d == nil then n.d = redis.call('HGET', KN .. id, 'd') end
    return n
  end
  local v
  if data then
    v = redis.call('HMGET', KN .. id, 'st', 'm', 'pe', 'at', 'tk', 'tl', 'sl', 'ex', 'cz', 'c', 'd')
  else
    v = redis.call('HMGET', KN .. id, 'st', 'm', 'pe', 'at', 'tk', 'tl', 'sl', 'ex', 'cz', 'c')
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
  local v = redis.call('HMGET', KN .. id, 'st', 'm', 'at', 'tl', 'd')
  if not v[1] then return nil end
  local n = node(id, v[1], v[2])
  n.m, n.at, n.tl, n.d, n.part = v[2], tonumber(v[3]) or 0, v[4] or '', v[5], 'claim'
  NODES[id] = n
  return n
end

local function loadDone(id)
  if NODES[id] then return load(id) end
  local v = redis.call('HMGET', KN .. id, 'st', 'm', 'at', 'tk', 'tl', 'c')
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
      hset(KN .. n.id, n.w)
      n.w = nil
    end
  end
  DIRTIED = {}
end

local function terminal(st)
  return st == 'succeeded' or st == 'failed' or st == 'skipped' or st == 'cancelled'
end

-- count's keys, "state|queue|type", by n.qt and state: made once per
-- call, as a concatenation makes a new string each time.
local CKEYS
local function count(st, n, d)
  local t = CKEYS[n.qt]
  if not t then t = {}; CKEYS[n.qt] = t end
  local k = t[st]
  if not k then k = st .. n.qt; t[st] = k end
  COUNTS[k] = (COUNTS[k] or 0) + d
end

-- leave the set the old state kept the node in; enter the new one's
-- (every state but the first, none, has one).
-- A node made ready in this call waits in READY (n.fresh) until claim()
-- takes it or commit() adds it to the ready set.
local function membership(n, from, to, score)
  if from == 'ready' then
    if n.fresh then n.fresh = nil
    elseif not n.popped then zop(readyKey(n.lk), n.id, false) end
  elseif from == 'delayed' then zop(DELAYED, n.id, false)
  elseif from == 'active' then zop(ACTIVE, n.id, false)
  elseif INDEXED[from] then zop(ixKey(from, n.lk), n.id, false) end
  if to == 'ready' then
    n.fresh, n.popped, n.rs = true, nil, (1000 - n.pr) * PRIO + (NOW - EPOCH)
    local r = READY[n.lk]
    if not r then r = {}; READY[n.lk] = r end
    r[#r + 1] = n
    WAKE[n.lk] = (WAKE[n.lk] or 0) + 1
  elseif to == 'delayed' then zop(DELAYED, n.id, score)
  elseif to == 'active' then zop(ACTIVE, n.id, score)
  elseif INDEXED[to] then zop(ixKey(to, n.lk), n.id, NOWS) end
end

-- forget takes a node about to be deleted out of its counter and its
-- state's set.
local function forget(n)
  count(n.st, n, -1)
  membership(n, n.st, nil)
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
local TAILS -- worker -> ',' .. worker, once per call
local function move(n, to, worker, extra, score, when)
  local from = n.st
  local ts = when or NOWS
  membership(n, from, to, score)
  local at = itos(n.at)
  local tail = ''
  if worker then
    tail = TAILS[worker]
    if not tail then tail = ',' .. worker; TAILS[worker] = tail end
  end
  if n.bt and from == 'active' then tail = ',' .. (worker or '') .. ',' .. n.bt end
  n.tl = n.tl .. to .. ',' .. ts .. ',' .. at .. tail .. '|'
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
  local ft, tt = terminal(from), terminal(to)
  if tt and not ft then
    unfinished(n, -1)
    ENDED = ENDED + 1
  elseif ft and not tt then
    unfinished(n, 1)
  end
  if #EVENTS < MAXEVENTS then
    EVENTS[#EVENTS + 1] = n.id .. SEP .. from .. SEP .. to .. SEP .. ts .. SEP .. at .. SEP .. (worker or '')
  end
end

-- ERRORS is how many attempts' errors a node's history (eh) keeps.
local ERRORS = 25

-- history is eh, a node's error history, with entry e added last, less
-- the oldest entries past ERRORS.
local function history(eh, e)
  if not eh or eh == '' then return e end
  eh = eh .. SEP .. e
  local seps, at = {}, 0
  while true do
    at = string.find(eh, SEP, at + 1, true)
    if not at then break end
    seps[#seps + 1] = at
  end
  if #seps < ERRORS then return eh end
  return string.sub(eh, seps[#seps - ERRORS + 1] + 1)
end
