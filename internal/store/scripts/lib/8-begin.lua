-- lib/8-begin.lua — the start of every call.

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
  DONE, ACTIVE, DELAYED = P .. 'done', P .. 'active', P .. 'delayed'
  KN, KF, KFM, KLANE, KWAKE, KOLDQ, KRATE, KIX = P .. 'n:', P .. 'f:', P .. 'fm:', P .. 'rq:', P .. 'wk:', P .. 'q:', P .. 'rate:', P .. 'ix:'
  KCOUNTS, KCTL, KEVENTS, KEVSEQ, KRUNNERS, KRINFO = P .. 'counts', P .. 'ctl', P .. 'events', P .. 'evseq', P .. 'runners', P .. 'rinfo'
  EVENTS, ENDED, COUNTS, LEFT, ZOPS, WAKE, DRAINED = {}, 0, {}, {}, {}, {}, {}
  NODES, DIRTIED, READY, NEWFLOW, RATE, PLANNED, AGAIN = {}, {}, {}, {}, {}, {}, nil
  SCORES, ITOS, READYKEYS, METAS, READYAT, CKEYS, TAILS, TOKENS, IXKEYS = {}, {}, {}, {}, {}, {}, {}, {}, {}
end
