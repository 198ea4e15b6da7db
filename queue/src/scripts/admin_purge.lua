-- admin_purge.lua: removes one kind of job from one partition, after the operator confirmed.
-- Jobs a worker holds (the group's pending entries) are never touched: 'waiting' deletes only
-- entries after the group's last-delivered-id, which no worker has seen, so XLEN − pending stays
-- exactly the backlog (see stats.lua) and every in-flight job still settles normally.
-- KEYS[1] = partition stream
-- KEYS[2] = partition delayed set
-- KEYS[3] = partition dead-letter stream
-- ARGV[1] = consumer group
-- ARGV[2] = 'waiting', 'delayed' or 'dead'
-- ARGV[3] = most stream entries deleted in this call ('waiting')
-- Returns { removed, 1 if more is left to remove (call again), else 0 }.
if ARGV[2] == 'delayed' then
  local n = redis.call('ZCARD', KEYS[2])
  redis.call('DEL', KEYS[2])
  return { n, 0 }
end
if ARGV[2] == 'dead' then
  local n = redis.call('XLEN', KEYS[3])
  redis.call('DEL', KEYS[3])
  return { n, 0 }
end
if redis.call('EXISTS', KEYS[1]) == 0 then return { 0, 0 } end
local from = '-'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] end
    if group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  if name == ARGV[1] and last ~= '0-0' then from = '(' .. last end
end
local want = tonumber(ARGV[3])
local undelivered = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', want)
local ids = {}
for _, e in ipairs(undelivered) do ids[#ids + 1] = e[1] end
for s = 1, #ids, 1000 do
  local slice = {}
  for i = s, math.min(s + 999, #ids) do slice[#slice + 1] = ids[i] end
  redis.call('XDEL', KEYS[1], unpack(slice))
end
local more = 0
if #ids == want then more = 1 end
return { #ids, more }
