-- retry.lua: move one failed entry from the stream to the delayed set, atomically — fenced: only
-- if this consumer still owns the entry at the delivery count it read it at. The run-at time is
-- Redis's clock (TIME) plus the delay, the clock promote.lua compares with.
-- KEYS[1] = partition stream
-- KEYS[2] = partition delayed set
-- ARGV[1] = consumer group
-- ARGV[2] = consumer name
-- ARGV[3] = entry id
-- ARGV[4] = delivery count the consumer read the entry at
-- ARGV[5] = delay (ms) before the next attempt
-- ARGV[6] = delayed member (JSON array of the next attempt's field/value pairs)
-- Returns 1 if the entry was still this consumer's (and is now delayed), 0 if not.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] or tostring(p[1][4]) ~= ARGV[4] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The write that can fail (a wrong key type) goes first: a failed script keeps what it wrote.
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
