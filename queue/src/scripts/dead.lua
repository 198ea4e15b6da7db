-- dead.lua: move one entry from the stream to the dead-letter stream, atomically.
-- KEYS[1] = partition stream
-- KEYS[2] = partition dead-letter stream
-- ARGV[1] = consumer group
-- ARGV[2] = entry id
-- ARGV[3..n] = field/value pairs of the dead letter
-- Returns 1 if the entry was still pending (and is now dead), 0 if someone else acked it.
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
return 1
