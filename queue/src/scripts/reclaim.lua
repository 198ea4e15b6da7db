-- reclaim.lua: take over entries whose worker is gone — idle at least a lease AND owned by a
-- consumer whose heartbeat (extend.lua) is older than a lease, or missing — so a slow live
-- worker keeps its jobs. Nothing is taken within a lease of a gap in everyone's heartbeats
-- (Redis paused or restarted: every heartbeat is stale then, the workers' too). Own entries
-- are taken back only when idle for two leases (a batch this worker gave up on; its in-flight
-- entries held a lease/3 or longer are extended every lease/3, so their idle time stays under
-- 2/3 of a lease; the caller drops any it still runs).
-- KEYS[1] = partition stream
-- KEYS[2] = partition heartbeat set
-- KEYS[3] = partition "heartbeats trusted since"
-- ARGV[1] = consumer group
-- ARGV[2] = consumer name (the taker)
-- ARGV[3] = lease (ms)
-- ARGV[4] = most entries to take
-- ARGV[5] = start of the pending-list scan: '-' from the beginning, else what the last call returned
-- Returns { next start id or '0-0' when the scan is done, { id, deliveries, { field, value, … } }, … }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #newest < 2 or tonumber(newest[2]) < now - lease / 2 then
  redis.call('SET', KEYS[3], now, 'PX', 3600000)
end
local out = { '0-0' }
local since = tonumber(redis.call('GET', KEYS[3]) or '0')
if now - since < lease then return out end
local want = tonumber(ARGV[4])
local scan = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', lease, ARGV[5], '+', want * 4)
local alive = {}
local taken = 0
for _, p in ipairs(scan) do
  if taken >= want then
    out[1] = p[1]
    return out
  end
  local owner = p[2]
  local take
  if owner == ARGV[2] then
    take = p[3] >= 2 * lease
  else
    if alive[owner] == nil then
      local beat = redis.call('ZSCORE', KEYS[2], owner)
      alive[owner] = beat ~= false and beat ~= nil and tonumber(beat) >= now - lease
    end
    take = not alive[owner]
  end
  if take then
    local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], lease, p[1])
    if #got == 1 and got[1] then
      out[#out + 1] = { got[1][1], p[4] + 1, got[1][2] }
      taken = taken + 1
    end
  end
end
if #scan == want * 4 then
  -- More to scan: continue after the last id looked at (an exclusive start).
  out[1] = '(' .. scan[#scan][1]
end
return out
