-- consumers.lua: removes consumers from the group without losing an entry: only a consumer
-- with nothing pending is deleted (XGROUP DELCONSUMER would drop its pending entries).
-- KEYS[1] = partition stream
-- KEYS[2] = partition heartbeat set
-- KEYS[3] = partition "heartbeats trusted since"
-- ARGV[1] = consumer group
-- ARGV[2] = 'leave': the consumer ARGV[3] leaves (deleted if nothing is pending, and its
--           heartbeat removed either way, so others reclaim what it left at once);
--           'prune': every consumer with nothing pending, idle at least a lease and no heartbeat
--           within a lease is deleted (a worker that died empty-handed); ARGV[3] = lease (ms)
-- Returns the number of consumers deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local deleted = 0
if ARGV[2] == 'leave' then
  redis.call('ZREM', KEYS[2], ARGV[3])
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local name, pending
    for i = 1, #c, 2 do
      if c[i] == 'name' then name = c[i + 1] end
      if c[i] == 'pending' then pending = c[i + 1] end
    end
    if name == ARGV[3] and pending == 0 then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      deleted = deleted + 1
    end
  end
  return deleted
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local since = tonumber(redis.call('GET', KEYS[3]) or '0')
if now - since < lease then return 0 end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #c, 2 do
    if c[i] == 'name' then name = c[i + 1] end
    if c[i] == 'pending' then pending = c[i + 1] end
    if c[i] == 'idle' then idle = c[i + 1] end
  end
  if pending == 0 and idle >= lease then
    local beat = redis.call('ZSCORE', KEYS[2], name)
    if not beat or tonumber(beat) < now - lease then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
      redis.call('ZREM', KEYS[2], name)
      deleted = deleted + 1
    end
  end
end
return deleted
