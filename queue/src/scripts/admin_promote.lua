-- admin_promote.lua: run one delayed job now: move its member from the delayed set to the
-- stream in one step (as promote.lua does for due jobs), if it is still there.
-- KEYS[1] = partition delayed set
-- KEYS[2] = partition stream
-- ARGV[1] = the delayed member (JSON array of the job's field/value pairs)
-- Returns 1 if the job was moved, 0 if it was no longer delayed (promoted or removed meanwhile).
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then return 0 end
local ok, fields = pcall(cjson.decode, ARGV[1])
if not ok or type(fields) ~= 'table' or #fields < 2 or #fields % 2 ~= 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
