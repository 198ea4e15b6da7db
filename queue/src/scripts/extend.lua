-- extend.lua: a worker's heartbeat on one partition: records it as alive (Redis's clock, in the
-- partition's heartbeat set, which reclaim.lua reads) and resets the idle time of its in-flight
-- entries so no other worker reclaims them — only entries this consumer still owns (never steal
-- one back). Also notices a gap in everyone's heartbeats (Redis was paused, restarted or cut off
-- from every worker): then no heartbeat says anything about liveness, and reclaim.lua waits a
-- lease from the gap before it believes a stale one again.
-- KEYS[1] = partition stream
-- KEYS[2] = partition heartbeat set (member = consumer, score = Redis time of its last beat, ms)
-- KEYS[3] = partition "heartbeats trusted since" (Redis time, ms, of the last gap)
-- ARGV[1] = consumer group
-- ARGV[2] = consumer name
-- ARGV[3] = lease (ms)
-- ARGV[4..n] = entry ids the consumer is working on
-- Returns the number of entries whose lease was extended.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local newest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if #newest < 2 or tonumber(newest[2]) < now - lease / 2 then
  redis.call('SET', KEYS[3], now, 'PX', 3600000)
end
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600000)
-- Which of the given ids this consumer still owns: one walk of its own pending entries between
-- the smallest and largest given id (XPENDING filtered by consumer reads only that consumer's
-- list, in pages of 1000), never one XPENDING per id.
local wanted, lo, hi = {}, nil, nil
for i = 4, #ARGV do
  local id = ARGV[i]
  wanted[id] = true
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  local key = { tonumber(ms), tonumber(seq) }
  if lo == nil or key[1] < lo[1] or (key[1] == lo[1] and key[2] < lo[2]) then lo = key end
  if hi == nil or key[1] > hi[1] or (key[1] == hi[1] and key[2] > hi[2]) then hi = key end
end
local ids = {}
if lo ~= nil then
  local from, to = string.format('%.0f-%.0f', lo[1], lo[2]), string.format('%.0f-%.0f', hi[1], hi[2])
  while true do
    local page = redis.call('XPENDING', KEYS[1], ARGV[1], from, to, 1000, ARGV[2])
    for _, entry in ipairs(page) do
      if wanted[entry[1]] then ids[#ids + 1] = entry[1] end
    end
    if #page < 1000 then break end
    from = '(' .. page[#page][1]
  end
end
local extended = 0
for s = 1, #ids, 1000 do
  -- unpack() only expands fully in last position, so build the whole argument list.
  local args = { 'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0 }
  for i = s, math.min(s + 999, #ids) do args[#args + 1] = ids[i] end
  args[#args + 1] = 'JUSTID'
  local claimed = redis.call(unpack(args))
  extended = extended + #claimed
end
return extended
