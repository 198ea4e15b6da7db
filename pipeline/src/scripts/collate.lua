-- collate.lua: record one packet of a resource; when the resource becomes whole, mark it complete
-- and enqueue its delivery job in the same atomic step.
-- Every key shares the hash tag of the webhooks stream partition the resource maps to, so the
-- script touches one slot (Redis Cluster safe).
-- KEYS[1] = parts hash of the resource     (field = seq, value = packet JSON)
-- KEYS[2] = meta hash of the resource      (total, first_seen_ms, done = completed_at | "timed_out")
-- KEYS[3] = open-resources ZSET of the partition (member = resource id, score = first-seen ms)
-- KEYS[4] = webhooks stream of the partition
-- ARGV[1] = resource id
-- ARGV[2] = seq
-- ARGV[3] = total
-- ARGV[4] = packet JSON {"w":[word lengths],"r":"<received_at RFC 3339>"}
-- ARGV[5] = now, unix ms
-- ARGV[6] = delivery job id (used only if this packet completes the resource)
-- ARGV[7] = completed_at (RFC 3339)
-- ARGV[8] = TTL in seconds of a completed resource's keys
-- ARGV[9] = delivery job payload JSON
-- Returns 1 when this call completed the resource (job enqueued), 0 when recorded or duplicate,
-- -1 when the packet's total disagrees with the resource's first-seen total (ignored).
if redis.call('HEXISTS', KEYS[2], 'done') == 1 then
  return 0
end
local total = redis.call('HGET', KEYS[2], 'total')
if not total then
  redis.call('HSET', KEYS[2], 'total', ARGV[3], 'first_seen_ms', ARGV[5])
  redis.call('ZADD', KEYS[3], 'NX', ARGV[5], ARGV[1])
  total = ARGV[3]
elseif total ~= ARGV[3] then
  return -1
end
redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[4])
if redis.call('HLEN', KEYS[1]) < tonumber(total) then
  return 0
end
redis.call('HSET', KEYS[2], 'done', ARGV[7])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'id', ARGV[6], 'payload', ARGV[9], 'attempt', '1', 'enqueued_at', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
return 1
