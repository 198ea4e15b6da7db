-- enqueue_many.lua: enqueue.lua for a run of jobs to run now in one partition, in one call (a
-- batch's deduplicated jobs): each job is added unless its id's deduplication marker exists.
-- One call instead of one per job: the script's own cost (lookup, KEYS/ARGV tables) is paid once
-- per run, and Redis parses one command.
-- KEYS[1] = partition stream
-- KEYS[1 + i] (i = 1..n) = the i-th job's deduplication marker
-- ARGV[1] = deduplication window (ms)
-- then per job i: the number m of its field/value arguments, then those m arguments
-- Returns how many of the jobs this call added.
-- A repeat still writes (the marker's own expiry, unchanged), so a WAIT after it on the
-- caller's connection covers the first call's writes too (replicas apply writes in order).
local window = ARGV[1]
local a = 2
local added = 0
for k = 2, #KEYS do
  local m = tonumber(ARGV[a])
  if redis.call('SET', KEYS[k], '1', 'NX', 'PX', window) then
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, a + 1, a + m))
    added = added + 1
  else
    local left = redis.call('PTTL', KEYS[k])
    if left > 0 then redis.call('PEXPIRE', KEYS[k], left) end
  end
  a = a + 1 + m
end
return added
