-- ack.lua: acknowledge and delete finished entries of one partition, so the stream ends empty.
-- KEYS[1] = partition stream
-- ARGV[1] = consumer group
-- ARGV[2..n] = entry ids
-- Returns the number of entries acknowledged.
if #ARGV < 2 then return 0 end
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
local acked = 0
-- unpack() is limited by the Lua stack, so work in slices.
for s = 1, #ids, 1000 do
  local slice = {}
  for i = s, math.min(s + 999, #ids) do slice[#slice + 1] = ids[i] end
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(slice))
  redis.call('XDEL', KEYS[1], unpack(slice))
end
return acked
