-- ack.lua: acknowledge and delete finished entries of one partition, so the stream ends empty —
-- fenced: only entries this consumer still owns, with the delivery count it read them at (a
-- lease token: a reclaim by anyone raises it), are acknowledged; an entry another worker took
-- over meanwhile is left to its new owner.
-- KEYS[1] = partition stream
-- ARGV[1] = consumer group
-- ARGV[2] = consumer name
-- ARGV[3..n] = entry id, delivery count, entry id, delivery count, ...
-- Returns the number of entries acknowledged.
local ids = {}
for i = 3, #ARGV - 1, 2 do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] and tostring(p[1][4]) == ARGV[i + 1] then
    ids[#ids + 1] = ARGV[i]
  end
end
local acked = 0
-- unpack() is limited by the Lua stack, so work in slices.
for s = 1, #ids, 1000 do
  local slice = {}
  for i = s, math.min(s + 999, #ids) do slice[#slice + 1] = ids[i] end
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(slice))
  redis.call('XDEL', KEYS[1], unpack(slice))
end
return acked
