-- stats.lua: one partition's counters, read in one atomic step so they agree with each other.
-- KEYS[1] = partition stream
-- KEYS[2] = partition delayed set
-- KEYS[3] = partition dead-letter stream
-- KEYS[4] = partition counter of dead letters trimmed away (dead.lua keeps the stream bounded)
-- ARGV[1] = consumer group
-- Returns { length, pending, delayed, dead, trimmed, bytes }; the caller takes
-- waiting = length - pending. `bytes` is what the stream and the delayed set hold in memory,
-- as MEMORY USAGE estimates it (a few stream nodes sampled: cheap at any length).
--
-- Why that is exact: an entry leaves the group's pending list only through ack.lua, retry.lua or
-- dead.lua, and each deletes it from the stream in the same step; so the stream holds exactly the
-- entries not yet delivered plus the pending ones, whatever was deleted, reclaimed or restored.
-- XINFO's `lag` is not used: Redis derives it from the counters entries-added and entries-read,
-- and a restart from a rewritten AOF leaves entries-read behind (later reads are replayed as
-- XCLAIM ... LASTID, which moves the group's last id only), so `lag` then counts entries that
-- were delivered, acked and deleted long ago.
local len = redis.call('XLEN', KEYS[1])
local pending = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, count
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] end
      if group[i] == 'pending' then count = group[i + 1] end
    end
    if name == ARGV[1] then pending = count or 0 end
  end
end
local bytes = (redis.call('MEMORY', 'USAGE', KEYS[1]) or 0) +
  (redis.call('MEMORY', 'USAGE', KEYS[2]) or 0)
return { len, pending, redis.call('ZCARD', KEYS[2]), redis.call('XLEN', KEYS[3]),
  tonumber(redis.call('GET', KEYS[4]) or '0'), bytes }
