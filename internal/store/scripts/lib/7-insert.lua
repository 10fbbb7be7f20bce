-- lib/7-insert.lua — writing new nodes: enqueue and expansion.

-- create writes a brand-new node n from f, a table write() fills anew
-- for each node: st (its state), m (meta), h (identity hash), d (data), pe
-- (unfinished parents; written only when not 0: missing reads as 0), and
-- optionally c (children), why and cz (an outcome at enqueue) and due (a
-- delayed node's due time).
local function create(n, f)
  local st, m, h, d, pe, c, why, cz = f.st, f.m, f.h, f.d, f.pe, f.c, f.why, f.cz
  n.st, n.tl, n.m, n.cz, n.created = st, st .. ',' .. NOWS .. ',0|', m, cz, true
  -- the rest as the metatable has them (see created): pe 0, c '', and the
  -- data left out (take reads it back if this call claims the node)
  if pe > 0 then n.pe = pe end
  if c then n.c = c end
  NODES[n.id] = n
  local key = KN .. n.id
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
  membership(n, nil, st, f.due)
  count(st, n, 1)
  if not terminal(st) then unfinished(n, 1) end
  if #EVENTS < MAXEVENTS then
    EVENTS[#EVENTS + 1] = n.id .. SEP .. SEP .. st .. SEP .. NOWS .. SEP .. '0' .. SEP
  end
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
        AGAIN = redis.call('EXISTS', KN .. n.id) == 1
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
      keys[#keys + 1] = KN .. n.id
    end
  end
  for k = 1, #keys, 1000 do
    if redis.call('EXISTS', unpack(keys, k, math.min(k + 999, #keys))) > 0 then taken = true; break end
  end
  for _, n in ipairs(taken and nodes or NONE) do
    local old = (n.fresh and not AGAIN) and {} or redis.call('HMGET', KN .. n.id, 'h', 'st')
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
        if not byId[p] and not PLANNED[p] and redis.call('EXISTS', KN .. p) == 0 then return {'unknown', n.id, p} end
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
      if not n.fresh and not n.existing then keys[#keys + 1] = KFM .. n.id end
    end
    for k = 1, #keys, 1000 do
      if redis.call('EXISTS', unpack(keys, k, math.min(k + 999, #keys))) > 0 then
        for j = k, math.min(k + 999, #keys) do
          if redis.call('EXISTS', keys[j]) == 1 then return {'flowid', string.sub(keys[j], #KFM + 1)} end
        end
      end
    end
  elseif not fresh and redis.call('EXISTS', KFM .. flow) == 0 then
    local m = redis.call('HGET', KN .. flow, 'm')
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
  local fields = {} -- create's argument, one table for every node
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
      fields.st, fields.m, fields.h, fields.d, fields.pe, fields.c = st, m, A[n.i + 2], A[n.i + 4], pe, children
      fields.why, fields.cz, fields.due = res and why, cz, (st == 'delayed') and (NOW + node.dl) or nil
      create(node, fields)
      n.st, n.cz = st, cz
      members[#members + 1] = n.id
    end
    out[#out + 1] = n.existing and ('=' .. n.st) or n.st
  end
  if not single and #members > 0 then
    for k = 1, #members, 1000 do
      redis.call('SADD', KF .. flow, unpack(members, k, math.min(k + 999, #members)))
    end
    -- a new flow gets its node count (when fresh), creation time and
    -- unfinished count in commit()
    if fresh then
      NEWFLOW[flow] = #members
    elseif redis.call('HINCRBY', KFM .. flow, 'n', #members) == #members then
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
