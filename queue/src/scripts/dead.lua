-- dead.lua: move one entry from the stream to the dead-letter stream, atomically, and keep the
-- dead-letter stream near its length limit, counting what the trim removed. Fenced like ack.lua:
-- only an entry this consumer still owns at the delivery count it read it at.
-- KEYS[1] = partition stream
-- KEYS[2] = partition dead-letter stream
-- KEYS[3] = partition counter of trimmed dead letters
-- ARGV[1] = consumer group
-- ARGV[2] = consumer name
-- ARGV[3] = entry id, or '' for a job dead-lettered without ever being in the stream
-- ARGV[4] = delivery count the consumer read the entry at
-- ARGV[5] = most dead letters kept (approximately: whole stream nodes are trimmed); 0 = all
-- ARGV[6..n] = field/value pairs of the dead letter
-- Returns 1 if the entry was still this consumer's (and is now dead), 0 if not.
if ARGV[3] ~= '' then
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
  if #p == 0 or p[1][2] ~= ARGV[2] or tostring(p[1][4]) ~= ARGV[4] then return 0 end
end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
-- The writes that can fail go first: a failed script keeps what it wrote.
redis.call('XADD', KEYS[2], '*', unpack(fields))
local keep = tonumber(ARGV[5])
if keep > 0 then
  local trimmed = redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', keep)
  if trimmed > 0 then redis.call('INCRBY', KEYS[3], trimmed) end
end
if ARGV[3] ~= '' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  redis.call('XDEL', KEYS[1], ARGV[3])
end
return 1
