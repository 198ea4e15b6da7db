-- extend.lua: heartbeat for in-flight entries: reset their idle time so no other worker
-- reclaims them, but only for entries this consumer still owns (never steal one back).
-- KEYS[1] = partition stream
-- ARGV[1] = consumer group
-- ARGV[2] = consumer name
-- ARGV[3..n] = entry ids the consumer is working on
-- Returns the number of entries whose lease was extended.
local ids = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p == 1 then ids[#ids + 1] = ARGV[i] end
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
