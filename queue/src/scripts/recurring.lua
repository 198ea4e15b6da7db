-- recurring.lua: enqueue one occurrence of a recurring job exactly once, however many
-- schedulers race for it: the occurrence marker and the XADD happen in one step.
-- KEYS[1] = occurrence marker key
-- KEYS[2] = partition stream
-- ARGV[1] = marker time-to-live (ms)
-- ARGV[2..n] = field/value pairs of the job entry
-- Returns 1 if this call enqueued the occurrence, 0 if another scheduler already did.
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
return 1
