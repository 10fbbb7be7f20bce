-- lib/2-release.lua — ending a node and resolving its descendants by
-- their policies (finish), releasing the children whose parents are done.

local finish

-- counted counts a succeeded parent of child cid, a child of several
-- parents not read in this call, with one HINCRBY. It returns the child
-- when that was the last parent it waited for. pe is only read while a node
-- is blocked (and set whenever one becomes blocked), so a child that another
-- parent ended is left counted down; the key HINCRBY made for a child gone
-- with its flow is deleted.
local function counted(cid)
  local key = KN .. cid
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
