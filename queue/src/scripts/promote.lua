-- promote.lua: move due jobs from the delayed set to the stream. "Due" is by Redis's clock
-- (TIME), the clock retry.lua schedules with, so workers' clocks never matter.
-- KEYS[1] = partition delayed set
-- KEYS[2] = partition stream
-- ARGV[1] = most jobs to move in this call
-- Returns { moved, ms until the next job is due (-1 when nothing else is scheduled) }.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local ok, fields = pcall(cjson.decode, member)
  if ok and type(fields) == 'table' and #fields >= 2 and #fields % 2 == 0 then
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
  redis.call('ZREM', KEYS[1], member)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if #nxt == 2 then wait = math.max(0, tonumber(nxt[2]) - now) end
return { #due, wait }
