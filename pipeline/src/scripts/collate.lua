-- collate.lua: record packets of resources, in order; when a resource becomes whole, mark it
-- complete and enqueue its delivery job in the same atomic step. A resource whose collated size
-- passes the limit is dead-lettered here instead, and its parts dropped.
-- One call records every packet of a batch that maps to one webhooks stream partition: every key
-- shares that partition's hash tag, so the script touches one slot (Redis Cluster safe), and the
-- constants travel once per call instead of once per packet. The tombstone bucket keys are
-- derived from ARGV[3] (see collate/tombstone.rs): HASH id -> complete | delivered | timed_out |
-- too_large.
-- KEYS[1] = open-resources ZSET of the partition (member = resource id, score = first-seen ms)
-- KEYS[2] = webhooks stream of the partition
-- KEYS[3] = dead-letter stream of the partition
-- KEYS[4] = counter of trimmed dead letters of the partition
-- KEYS[3 + 2i], KEYS[4 + 2i] (i = 1..n) = parts hash (field = seq, value = packet JSON) and meta
--   hash (total, first_seen_ms, words, done = completed_at, delivered: Collator::release) of
--   packet i's resource
-- ARGV[1]  = now, unix ms
-- ARGV[2]  = completed_at (RFC 3339)
-- ARGV[3]  = tombstone bucket key prefix of the partition
-- ARGV[4]  = current tombstone bucket number
-- ARGV[5]  = tombstone buckets to read
-- ARGV[6]  = TTL in seconds of a new tombstone bucket
-- ARGV[7]  = retention in seconds of completed, undelivered data
-- ARGV[8]  = largest number of word lengths a resource may hold
-- ARGV[9]  = most dead letters kept in the partition's dead-letter stream (0 = all)
-- ARGV[10..13] = job entry field names: id, payload, attempt, enqueued_at (queue::wire)
-- ARGV[14..19] = dead-letter field names: id, payload, error, attempts, history, dead_at
-- ARGV[20] = trace field name of a job entry (queue::wire::TRACE)
-- then 8 per packet i (base b = 20 + 8 (i - 1)):
-- ARGV[b+1] = resource key (collate/mod.rs: producer and resource id)
-- ARGV[b+2] = seq
-- ARGV[b+3] = total
-- ARGV[b+4] = packet JSON {"w":[word lengths],"r":"<received_at RFC 3339>"}
-- ARGV[b+5] = number of word lengths in this packet
-- ARGV[b+6] = job id (of the delivery job, or of the dead letter: too large, or a conflicting
--             total)
-- ARGV[b+7] = delivery job payload JSON (also the dead letter's payload)
-- ARGV[b+8] = this packet's W3C traceparent, or '': the delivery job carries the trace of the
--             packet that completed the resource
-- Returns one number per packet, in order: 1 when it completed the resource (job enqueued), 0
-- when recorded, duplicate or ignored (the resource is finished), -1 when the packet's total
-- disagrees with the resource's first-seen total (the packet is dead-lettered with the reason, the
-- resource unchanged), -2 when this packet made the resource too large (the resource is
-- dead-lettered).
local now, current = ARGV[1], tonumber(ARGV[4])
local buckets, max_words, keep = tonumber(ARGV[5]), tonumber(ARGV[8]), tonumber(ARGV[9])
local n = (#KEYS - 4) / 2
-- The tombstone buckets a lookup reads, newest first (their names built once per call).
local lookup = {}
for back = 0, math.min(buckets - 1, current) do lookup[#lookup + 1] = ARGV[3] .. (current - back) end

-- Tombstones of this call, written to the current bucket in one HSET at the end (a write per
-- resource, with its EXPIRE, cost more than the rest of a completion); the tombstone check reads
-- them first, so a later packet of the same call sees them as if written.
local buried, buried_ids = {}, {}
local function bury(id, state)
  if not buried[id] then buried_ids[#buried_ids + 1] = id end
  buried[id] = state
end

local function dead_letter(job_id, payload, reason)
  redis.call('XADD', KEYS[3], '*', ARGV[14], job_id, ARGV[15], payload, ARGV[16], reason,
    ARGV[17], '0', ARGV[18], cjson.encode({reason}), ARGV[19], now)
  if keep > 0 then
    local trimmed = redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', keep)
    if trimmed > 0 then redis.call('INCRBY', KEYS[4], trimmed) end
  end
end

-- Fewest calls per packet (each redis.call costs the interpreter more than the command itself):
-- one HMGET reads total and done; a new resource's meta is written whole in one HSET (words
-- included, and done when its only packet completes it); a resource complete with its first
-- packet never enters the open set (its ZADD and ZREM would cancel out). `opened`: the resource
-- is in the open set and its meta lacks done.
local function complete(parts, meta, b, opened)
  local id, job_id, payload, trace = ARGV[b + 1], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
  if opened then
    redis.call('HSET', meta, 'done', ARGV[2])
    redis.call('ZREM', KEYS[1], id)
  end
  if trace ~= '' then
    redis.call('XADD', KEYS[2], '*', ARGV[10], job_id, ARGV[11], payload, ARGV[12], '1', ARGV[13],
      now, ARGV[20], trace)
  else
    redis.call('XADD', KEYS[2], '*', ARGV[10], job_id, ARGV[11], payload, ARGV[12], '1', ARGV[13],
      now)
  end
  -- Undelivered data is kept for the whole retention; delivery shortens it (Collator::release).
  bury(id, 'complete')
  redis.call('EXPIRE', parts, ARGV[7])
  redis.call('EXPIRE', meta, ARGV[7])
  return 1
end

local function too_large(parts, meta, b, words, total)
  local id = ARGV[b + 1]
  local reason = 'resource ' .. id .. ' too large: ' .. words .. ' word lengths after ' ..
    redis.call('HLEN', parts) .. ' of ' .. total .. ' packets, over the limit of ' .. ARGV[8]
  redis.call('DEL', parts, meta)
  redis.call('ZREM', KEYS[1], id)
  bury(id, 'too_large')
  dead_letter(ARGV[b + 6], ARGV[b + 7], reason)
  return -2
end

local function collate(parts, meta, b)
  local id, seq, given_total = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local state = redis.call('HMGET', meta, 'total', 'done')
  local total = state[1]
  if total then
    if state[2] then return 0 end
    if total ~= given_total then
      dead_letter(ARGV[b + 6], ARGV[b + 7], 'resource ' .. id .. ': packet seq ' .. seq ..
        ' says total ' .. given_total .. ' but the resource has total ' .. total ..
        ' (from its first packet); the packet was not collated')
      return -1
    end
    if redis.call('HSETNX', parts, seq, ARGV[b + 4]) == 0 then
      return 0
    end
    local words = redis.call('HINCRBY', meta, 'words', ARGV[b + 5])
    if words > max_words then return too_large(parts, meta, b, words, total) end
    if redis.call('HLEN', parts) < tonumber(total) then
      return 0
    end
    return complete(parts, meta, b, true)
  end
  -- No live data: a new resource, or a finished one whose data is gone (its tombstone says so).
  if buried[id] then return 0 end
  for _, bucket in ipairs(lookup) do
    if redis.call('HEXISTS', bucket, id) == 1 then return 0 end
  end
  -- Parts without meta only if something deleted meta alone: HSETNX and HLEN still count them.
  redis.call('HSETNX', parts, seq, ARGV[b + 4])
  local words = tonumber(ARGV[b + 5])
  if words > max_words then return too_large(parts, meta, b, words, given_total) end
  if tonumber(given_total) <= 1 or redis.call('HLEN', parts) >= tonumber(given_total) then
    redis.call('HSET', meta, 'total', given_total, 'first_seen_ms', now, 'words', words, 'done',
      ARGV[2])
    return complete(parts, meta, b, false)
  end
  redis.call('HSET', meta, 'total', given_total, 'first_seen_ms', now, 'words', words)
  redis.call('ZADD', KEYS[1], 'NX', now, id)
  return 0
end

local results = {}
for i = 1, n do
  results[i] = collate(KEYS[3 + 2 * i], KEYS[4 + 2 * i], 20 + 8 * (i - 1))
end
if #buried_ids > 0 then
  local bucket, fields = ARGV[3] .. ARGV[4], {}
  for i, id in ipairs(buried_ids) do
    fields[#fields + 1], fields[#fields + 2] = id, buried[id]
    if #fields >= 400 or i == #buried_ids then
      redis.call('HSET', bucket, unpack(fields))
      fields = {}
    end
  end
  redis.call('EXPIRE', bucket, ARGV[6], 'NX')
end
return results
