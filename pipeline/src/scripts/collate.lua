-- collate.lua: record one packet of a resource; when the resource becomes whole, mark it complete
-- and enqueue its delivery job in the same atomic step. A resource whose collated size passes the
-- limit is dead-lettered here instead, and its parts dropped.
-- Every key shares the hash tag of the webhooks stream partition the resource maps to, so the
-- script touches one slot (Redis Cluster safe). The tombstone bucket keys are derived from ARGV[9]
-- (see collate/tombstone.rs): HASH id -> complete | delivered | timed_out | too_large.
-- KEYS[1] = parts hash of the resource     (field = seq, value = packet JSON)
-- KEYS[2] = meta hash of the resource      (total, first_seen_ms, words, done = completed_at)
-- KEYS[3] = open-resources ZSET of the partition (member = resource id, score = first-seen ms)
-- KEYS[4] = webhooks stream of the partition
-- KEYS[5] = dead-letter stream of the partition
-- KEYS[6] = counter of trimmed dead letters of the partition
-- ARGV[1]  = resource key (collate/mod.rs: producer and resource id)
-- ARGV[2]  = seq
-- ARGV[3]  = total
-- ARGV[4]  = packet JSON {"w":[word lengths],"r":"<received_at RFC 3339>"}
-- ARGV[5]  = number of word lengths in this packet
-- ARGV[6]  = now, unix ms
-- ARGV[7]  = job id (of the delivery job, or of the dead letter: too large, or a conflicting total)
-- ARGV[8]  = completed_at (RFC 3339)
-- ARGV[9]  = tombstone bucket key prefix of the partition
-- ARGV[10] = current tombstone bucket number
-- ARGV[11] = tombstone buckets to read
-- ARGV[12] = TTL in seconds of a new tombstone bucket
-- ARGV[13] = retention in seconds of completed, undelivered data
-- ARGV[14] = delivery job payload JSON (also the dead letter's payload)
-- ARGV[15] = largest number of word lengths a resource may hold
-- ARGV[16] = most dead letters kept in the partition's dead-letter stream (0 = all)
-- ARGV[17..20] = job entry field names: id, payload, attempt, enqueued_at (queue::wire)
-- ARGV[21..26] = dead-letter field names: id, payload, error, attempts, history, dead_at
-- ARGV[27] = trace field name of a job entry (queue::wire::TRACE)
-- ARGV[28] = this packet's W3C traceparent, or '': the delivery job carries the trace of the
--            packet that completed the resource
-- Returns 1 when this call completed the resource (job enqueued), 0 when recorded, duplicate or
-- ignored (the resource is finished), -1 when the packet's total disagrees with the resource's
-- first-seen total (the packet is dead-lettered with the reason, the resource unchanged), -2 when
-- this packet made the resource too large (the resource is dead-lettered).
local id = ARGV[1]
local function bury(state)
  local bucket = ARGV[9] .. ARGV[10]
  redis.call('HSET', bucket, id, state)
  redis.call('EXPIRE', bucket, ARGV[12], 'NX')
end
local function dead_letter(reason)
  redis.call('XADD', KEYS[5], '*', ARGV[21], ARGV[7], ARGV[22], ARGV[14], ARGV[23], reason,
    ARGV[24], '0', ARGV[25], cjson.encode({reason}), ARGV[26], ARGV[6])
  local keep = tonumber(ARGV[16])
  if keep > 0 then
    local trimmed = redis.call('XTRIM', KEYS[5], 'MAXLEN', '~', keep)
    if trimmed > 0 then redis.call('INCRBY', KEYS[6], trimmed) end
  end
end
local total = redis.call('HGET', KEYS[2], 'total')
if total then
  if redis.call('HEXISTS', KEYS[2], 'done') == 1 then return 0 end
  if total ~= ARGV[3] then
    dead_letter('resource ' .. id .. ': packet seq ' .. ARGV[2] .. ' says total ' .. ARGV[3] ..
      ' but the resource has total ' .. total .. ' (from its first packet); the packet was not collated')
    return -1
  end
else
  -- No live data: a new resource, or a finished one whose data is gone (its tombstone says so).
  local current = tonumber(ARGV[10])
  for back = 0, math.min(tonumber(ARGV[11]) - 1, current) do
    if redis.call('HEXISTS', ARGV[9] .. (current - back), id) == 1 then return 0 end
  end
  redis.call('HSET', KEYS[2], 'total', ARGV[3], 'first_seen_ms', ARGV[6], 'words', 0)
  redis.call('ZADD', KEYS[3], 'NX', ARGV[6], id)
  total = ARGV[3]
end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[4]) == 0 then
  return 0
end
local words = redis.call('HINCRBY', KEYS[2], 'words', tonumber(ARGV[5]))
if words > tonumber(ARGV[15]) then
  local reason = 'resource ' .. id .. ' too large: ' .. words .. ' word lengths after ' ..
    redis.call('HLEN', KEYS[1]) .. ' of ' .. total .. ' packets, over the limit of ' .. ARGV[15]
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], id)
  bury('too_large')
  dead_letter(reason)
  return -2
end
if redis.call('HLEN', KEYS[1]) < tonumber(total) then
  return 0
end
redis.call('HSET', KEYS[2], 'done', ARGV[8])
redis.call('ZREM', KEYS[3], id)
if ARGV[28] ~= '' then
  redis.call('XADD', KEYS[4], '*', ARGV[17], ARGV[7], ARGV[18], ARGV[14], ARGV[19], '1', ARGV[20],
    ARGV[6], ARGV[27], ARGV[28])
else
  redis.call('XADD', KEYS[4], '*', ARGV[17], ARGV[7], ARGV[18], ARGV[14], ARGV[19], '1', ARGV[20], ARGV[6])
end
-- Undelivered data is kept for the whole retention; delivery shortens it (Collator::release).
bury('complete')
redis.call('EXPIRE', KEYS[1], ARGV[13])
redis.call('EXPIRE', KEYS[2], ARGV[13])
return 1
