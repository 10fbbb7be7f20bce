-- retry.lua — run a failed or cancelled node again, with the descendants that
-- were cancelled or skipped because of it.
-- KEYS[1]  namespace prefix
-- ARGV     now, id
-- Returns  {'ok', reset count} | {'notfound'} | {'state', current state}
local id = ARGV[2]
local x = load(id, true)
if not x then return {'notfound'} end
if x.st ~= 'failed' and x.st ~= 'cancelled' then return {'state', x.st} end
-- the nodes to reset: x, and its descendants whose cause was x
local reset, inReset = {x}, {[id] = true}
local k = 1
while k <= #reset do
  for _, cid in ipairs(split(reset[k].c)) do
    if not inReset[cid] then
      local c = load(cid, true)
      if c and (c.st == 'cancelled' or c.st == 'skipped') and c.cz == id then
        reset[#reset + 1] = c
        inReset[cid] = true
      end
    end
  end
  k = k + 1
end
-- reopen them, then decide each one's pending count from its parents
for _, n in ipairs(reset) do
  n.at = 0
  n.sl = 0
  move(n, 'blocked', nil, {'at', 0, 'sl', 0, 'er', '', 'why', '', 'cz', '', 'r', ''})
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
    local parents = cjson.decode(n.d).p or {}
    local pe, res, why = 0, nil, nil
    for _, p in ipairs(parents) do
      local pn = load(p)
      local st = pn and pn.st or 'succeeded' -- a parent removed by retention had finished
      if pn and (inReset[p] or not terminal(st)) then
        pe = pe + 1
      else
        local r = outcome(n.po, st)
        if r and res ~= 'cancelled' then res, why = r, 'parent ' .. p .. ' ' .. st end
      end
    end
    if res then
      finish(n, res, why, id)
    else
      n.pe = pe
      put(n, 'pe', pe)
      if pe == 0 then release(n) end
    end
  end
end
commit()
return {'ok', tostring(#reset)}
