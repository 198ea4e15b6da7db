-- retry.lua: move one failed entry from the stream to the delayed set, atomically.
-- KEYS[1] = partition stream
-- KEYS[2] = partition delayed set
-- ARGV[1] = consumer group
-- ARGV[2] = entry id
-- ARGV[3] = run-at score (unix ms)
-- ARGV[4] = delayed member (JSON array of the next attempt's field/value pairs)
-- Returns 1 if the entry was still pending (and is now delayed), 0 if someone else acked it.
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
