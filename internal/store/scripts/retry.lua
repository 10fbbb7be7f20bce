-- retry.lua — run a failed or cancelled node again, with the descendants
-- that ended because of it: cancelled or skipped ones, and expanded ones
-- that failed for their sub-graph. What ended the node ended them too, so
-- a descendant whose cause was the node, or the node's own cause, is
-- reopened. An expanded descendant waits for its sub-graph again (its own
-- run stands); the node itself, if it expanded, runs its step again, and
-- its old sub-graph is discarded first (see discard in lib/6-expansion.lua).
-- KEYS[1]  namespace prefix
-- ARGV     now, id
-- Returns  {'ok', reset count} | {'notfound'} | {'state', current state}
local id = ARGV[2]
local x = load(id, true)
if not x then return {'notfound'} end
if x.st ~= 'failed' and x.st ~= 'cancelled' then return {'state', x.st} end
if x.ex == '1' then discard(x) end
local causes = {[id] = true}
if x.cz and x.cz ~= '' then causes[x.cz] = true end
-- the nodes to reset: x, and its descendants that ended because of it
local reset, inReset = {x}, {[id] = true}
local k = 1
while k <= #reset do
  for _, cid in ipairs(split(reset[k].c)) do
    if not inReset[cid] then
      local c = load(cid, true)
      if c and causes[c.cz or ''] and (c.st == 'cancelled' or c.st == 'skipped' or (c.st == 'failed' and c.ex == '1')) then
        reset[#reset + 1] = c
        inReset[cid] = true
      end
    end
  end
  k = k + 1
end
-- reopen them, then decide each one's pending count from its parents
for _, n in ipairs(reset) do
  if n.ex == '1' then -- an expanded descendant: it waits for its sub-graph again
    move(n, 'blocked', nil, {'why', '', 'cz', ''})
  else
    n.at, n.sl = 0, 0
    move(n, 'blocked', nil, {'at', 0, 'sl', 0, 'er', '', 'eh', '', 'why', '', 'cz', '', 'r', ''})
  end
  n.cz = ''
  for _, cid in ipairs(split(n.c)) do
    if not inReset[cid] then
      local c = load(cid)
      -- a waiting child already counted n as done; it is not any more. One
      -- that n's end released (ready or delayed, not started: an ignore
      -- child of a failed n) waits for n again.
      if c and c.st == 'blocked' then
        c.pe = c.pe + 1
        put(c, 'pe', c.pe)
      elseif c and (c.st == 'ready' or c.st == 'delayed') then
        c.pe = 1
        move(c, 'blocked', nil, {'pe', 1})
      end
    end
  end
end
for _, n in ipairs(reset) do
  if n.st == 'blocked' then
    -- an expanded node waits for its sub-graph's sinks, any other for its parents
    local sub = n.ex == '1'
    local parents = sub and expansion(n) or (cjson.decode(n.d).p or {})
    local pe, res, why, cz = 0, nil, nil, nil
    for _, p in ipairs(parents) do
      local pn = load(p)
      local st = pn and pn.st or 'succeeded' -- a parent removed by retention had finished
      if pn and (inReset[p] or not terminal(st)) then
        pe = pe + 1
      else
        local r
        if sub then
          if st == 'failed' or st == 'cancelled' then r = 'failed' end
        else
          r = outcome(n.po, st)
        end
        if r and res ~= 'cancelled' then
          res, why = r, (sub and 'sub-graph node ' or 'parent ') .. p .. ' ' .. st
          cz = (st ~= 'failed' and pn and pn.cz and pn.cz ~= '') and pn.cz or p
        end
      end
    end
    if res then
      finish(n, res, why, cz)
    else
      n.pe = pe
      put(n, 'pe', pe)
      if pe == 0 then release(n) end
    end
  end
end
commit()
return {'ok', tostring(#reset)}
