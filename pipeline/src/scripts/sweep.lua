-- sweep.lua: claim resources of one partition that stayed incomplete past the timeout, dead-letter
-- each with a reason naming the missing seqs, tombstone it (late packets are then ignored) and drop
-- its data — all in one atomic step, so a claimed resource is always reported. Claiming is the
-- ZREM, so each resource is reported by exactly one of the concurrent sweepers.
-- The per-resource keys are derived from ARGV[3], the tombstone bucket from ARGV[4] .. ARGV[5];
-- all carry the same hash tag as KEYS[1] (one slot).
-- KEYS[1] = open-resources ZSET of the partition
-- KEYS[2] = dead-letter stream of the partition
-- KEYS[3] = counter of trimmed dead letters of the partition
-- ARGV[1] = cutoff, unix ms (resources first seen at or before it are timed out)
-- ARGV[2] = largest number of resources to claim
-- ARGV[3] = key prefix of resources in this partition (key = prefix .. id .. ':parts' / ':meta')
-- ARGV[4] = tombstone bucket key prefix of the partition
-- ARGV[5] = current tombstone bucket number
-- ARGV[6] = TTL in seconds of a new tombstone bucket
-- ARGV[7] = now, unix ms (the dead letters' dead_at)
-- ARGV[8] = reason template; {id}, {received}, {total} and {missing} are replaced
-- ARGV[9] = most missing seqs spelled out in a reason
-- ARGV[10] = most dead letters kept in the dead-letter stream (0 = all)
-- ARGV[11..16] = dead-letter field names: id, payload, error, attempts, history, dead_at
-- ARGV[17..] = one fresh job id per claimable resource (at least ARGV[2] of them)
-- Returns a flat array: id, total, first_seen_ms, "seq,seq,..." (received seqs) per claimed
-- resource, then as the last item the number of resources still open past the cutoff.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local listed = tonumber(ARGV[9])
local bucket = ARGV[4] .. ARGV[5]
local out = {}
for i, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local parts = ARGV[3] .. id .. ':parts'
  local meta = ARGV[3] .. id .. ':meta'
  -- An open resource is never finished (completion removes it from the set in the same step);
  -- the check only guards against a set edited behind the collator's back.
  if redis.call('HEXISTS', meta, 'done') == 0 then
    local total = redis.call('HGET', meta, 'total') or '0'
    local first = redis.call('HGET', meta, 'first_seen_ms') or '0'
    local seqs = redis.call('HKEYS', parts)
    local have = {}
    for _, s in ipairs(seqs) do have[tonumber(s)] = true end
    local missing, more = {}, 0
    for s = 0, tonumber(total) - 1 do
      if not have[s] then
        if #missing < listed then missing[#missing + 1] = tostring(s) else more = more + 1 end
      end
    end
    if more > 0 then missing[#missing + 1] = '… (' .. more .. ' more)' end
    local fill = {
      ['{id}'] = id, ['{received}'] = tostring(#seqs), ['{total}'] = total,
      ['{missing}'] = table.concat(missing, ', '),
    }
    local reason = string.gsub(ARGV[8], '{%a+}', function(k) return fill[k] end)
    redis.call('DEL', parts, meta)
    redis.call('HSET', bucket, id, 'timed_out')
    redis.call('EXPIRE', bucket, ARGV[6], 'NX')
    redis.call('XADD', KEYS[2], '*', ARGV[11], ARGV[16 + i], ARGV[12], cjson.encode({resource_id = id}),
      ARGV[13], reason, ARGV[14], '0', ARGV[15], cjson.encode({reason}), ARGV[16], ARGV[7])
    out[#out + 1] = id
    out[#out + 1] = total
    out[#out + 1] = first
    out[#out + 1] = table.concat(seqs, ',')
  end
end
local keep = tonumber(ARGV[10])
if keep > 0 and #out > 0 then
  local trimmed = redis.call('XTRIM', KEYS[2], 'MAXLEN', '~', keep)
  if trimmed > 0 then redis.call('INCRBY', KEYS[3], trimmed) end
end
out[#out + 1] = tostring(redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1]))
return out
