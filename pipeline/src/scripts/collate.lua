-- collate.lua: record one packet of a resource; when the resource becomes whole, mark it complete
-- and enqueue its delivery job in the same atomic step. A resource whose collated size passes the
-- limit is dead-lettered here instead, and its parts dropped.
-- Every key shares the hash tag of the webhooks stream partition the resource maps to, so the
-- script touches one slot (Redis Cluster safe).
-- KEYS[1] = parts hash of the resource     (field = seq, value = packet JSON)
-- KEYS[2] = meta hash of the resource      (total, first_seen_ms, words, done = completed_at)
-- KEYS[3] = open-resources ZSET of the partition (member = resource id, score = first-seen ms)
-- KEYS[4] = webhooks stream of the partition
-- KEYS[5] = tombstone of the resource      (STRING: complete | delivered | timed_out | too_large)
-- KEYS[6] = dead-letter stream of the partition
-- ARGV[1]  = resource id
-- ARGV[2]  = seq
-- ARGV[3]  = total
-- ARGV[4]  = packet JSON {"w":[word lengths],"r":"<received_at RFC 3339>"}
-- ARGV[5]  = number of word lengths in this packet
-- ARGV[6]  = now, unix ms
-- ARGV[7]  = job id (of the delivery job, or of the dead letter when the resource is too large)
-- ARGV[8]  = completed_at (RFC 3339)
-- ARGV[9]  = retention in seconds: TTL of the tombstone and of completed, undelivered data
-- ARGV[10] = delivery job payload JSON (also the dead letter's payload)
-- ARGV[11] = largest number of word lengths a resource may hold
-- ARGV[12..15] = job entry field names: id, payload, attempt, enqueued_at (queue::wire)
-- ARGV[16..21] = dead-letter field names: id, payload, error, attempts, history, dead_at
-- Returns 1 when this call completed the resource (job enqueued), 0 when recorded, duplicate or
-- ignored (the resource is finished), -1 when the packet's total disagrees with the resource's
-- first-seen total (ignored), -2 when this packet made the resource too large (dead-lettered).
if redis.call('EXISTS', KEYS[5]) == 1 or redis.call('HEXISTS', KEYS[2], 'done') == 1 then
  return 0
end
local total = redis.call('HGET', KEYS[2], 'total')
if not total then
  redis.call('HSET', KEYS[2], 'total', ARGV[3], 'first_seen_ms', ARGV[6], 'words', 0)
  redis.call('ZADD', KEYS[3], 'NX', ARGV[6], ARGV[1])
  total = ARGV[3]
elseif total ~= ARGV[3] then
  return -1
end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[4]) == 0 then
  return 0
end
local words = redis.call('HINCRBY', KEYS[2], 'words', tonumber(ARGV[5]))
if words > tonumber(ARGV[11]) then
  local reason = 'resource ' .. ARGV[1] .. ' too large: ' .. words .. ' word lengths after ' ..
    redis.call('HLEN', KEYS[1]) .. ' of ' .. total .. ' packets, over the limit of ' .. ARGV[11]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('SET', KEYS[5], 'too_large', 'EX', ARGV[9])
  redis.call('XADD', KEYS[6], '*', ARGV[16], ARGV[7], ARGV[17], ARGV[10], ARGV[18], reason,
    ARGV[19], '0', ARGV[20], cjson.encode({reason}), ARGV[21], ARGV[6])
  return -2
end
if redis.call('HLEN', KEYS[1]) < tonumber(total) then
  return 0
end
redis.call('HSET', KEYS[2], 'done', ARGV[8])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], '*', ARGV[12], ARGV[7], ARGV[13], ARGV[10], ARGV[14], '1', ARGV[15], ARGV[6])
-- Undelivered data is kept for the whole retention; delivery shortens it (Collator::release).
redis.call('SET', KEYS[5], 'complete', 'EX', ARGV[9])
redis.call('EXPIRE', KEYS[1], ARGV[9])
redis.call('EXPIRE', KEYS[2], ARGV[9])
return 1
