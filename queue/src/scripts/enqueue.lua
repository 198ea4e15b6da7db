-- enqueue.lua: an idempotent enqueue: a job with a caller-supplied id is added once within the
-- deduplication window, however often the caller retries (a retry after "outcome unknown").
-- KEYS[1] = the job id's deduplication marker
-- KEYS[2] = partition stream
-- KEYS[3] = partition delayed set
-- ARGV[1] = deduplication window (ms)
-- ARGV[2] = run-at (unix ms) for a delayed job, or '' to run now
-- ARGV[3] = delayed member (JSON array of the field/value pairs; used with a run-at)
-- ARGV[4..n] = field/value pairs of the job entry
-- Returns 1 if this call added the job, 0 if it was already added within the window.
-- A repeat still writes (the marker's own expiry, unchanged), so a WAIT after it on the
-- caller's connection covers the first call's writes too (replicas apply writes in order).
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then redis.call('PEXPIRE', KEYS[1], left) end
  return 0
end
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
  return 1
end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
return 1
