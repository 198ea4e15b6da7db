-- promote.lua: move due jobs from the delayed set to the stream.
-- KEYS[1] = partition delayed set
-- KEYS[2] = partition stream
-- ARGV[1] = now (unix ms)
-- ARGV[2] = most jobs to move in this call
-- Returns { moved, next_due_ms } where next_due_ms is -1 when nothing else is scheduled.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local ok, fields = pcall(cjson.decode, member)
  if ok and type(fields) == 'table' and #fields >= 2 and #fields % 2 == 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
if #nxt == 2 then next_due = tonumber(nxt[2]) end
return { #due, next_due }
