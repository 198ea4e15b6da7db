-- ack.lua: acknowledge and delete finished entries of one partition, so the stream ends empty —
-- fenced: only entries this consumer still owns, with the delivery count it read them at (a
-- lease token: a reclaim by anyone raises it), are acknowledged; an entry another worker took
-- over meanwhile is left to its new owner.
-- KEYS[1] = partition stream
-- ARGV[1] = consumer group
-- ARGV[2] = consumer name
-- ARGV[3] = the lowest of the entry ids, ARGV[4] = the highest (compared by the caller, so
-- Redis spends no Lua string matching on it)
-- ARGV[5..n] = entry id, delivery count, entry id, delivery count, ...
-- Returns the number of entries acknowledged.
-- One XPENDING over the range of the ids, this consumer's entries only (a lookup per id halved
-- a worker's drain rate in ./bench/queue.sh).
local want = {}
for i = 5, #ARGV - 1, 2 do
  want[ARGV[i]] = ARGV[i + 1]
end
if #ARGV < 6 then return 0 end
local lo, hi = ARGV[3], ARGV[4]
local ids = {}
for _, p in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], lo, hi, 1000000, ARGV[2])) do
  if want[p[1]] == tostring(p[4]) then ids[#ids + 1] = p[1] end
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
