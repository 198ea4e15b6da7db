-- dead.lua: move one entry from the stream to the dead-letter stream, atomically, and keep the
-- dead-letter stream near its length limit, counting what the trim removed.
-- KEYS[1] = partition stream
-- KEYS[2] = partition dead-letter stream
-- KEYS[3] = partition counter of trimmed dead letters
-- ARGV[1] = consumer group
-- ARGV[2] = entry id, or '' for a job dead-lettered without ever being in the stream
-- ARGV[3] = most dead letters kept (approximately: whole stream nodes are trimmed); 0 = all
-- ARGV[4..n] = field/value pairs of the dead letter
-- Returns 1 if the entry was still pending (and is now dead), 0 if someone else acked it.
if ARGV[2] ~= '' then
  local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  if acked == 0 then return 0 end
  redis.call('XDEL', KEYS[1], ARGV[2])
end
local fields = {}
for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
local keep = tonumber(ARGV[3])
if keep > 0 then
  local trimmed = redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', keep)
  if trimmed > 0 then redis.call('INCRBY', KEYS[3], trimmed) end
end
return 1
