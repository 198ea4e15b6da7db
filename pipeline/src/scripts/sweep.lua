-- sweep.lua: claim resources of one partition that stayed incomplete past the timeout, tombstone
-- them (late packets are then ignored) and drop their packets, reporting what arrived. Claiming
-- is the ZREM, so each resource is reported by exactly one of the concurrent sweepers.
-- The per-resource keys are derived from ARGV[3] and carry the same hash tag as KEYS[1] (one slot).
-- KEYS[1] = open-resources ZSET of the partition
-- ARGV[1] = cutoff, unix ms (resources first seen at or before it are timed out)
-- ARGV[2] = largest number of resources to claim
-- ARGV[3] = key prefix of resources in this partition (key = prefix .. id .. ':parts' / ':meta')
-- ARGV[4] = TTL in seconds of the tombstone
-- Returns a flat array: id, total, first_seen_ms, "seq,seq,..." (received seqs) per claimed resource.
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local parts = ARGV[3] .. id .. ':parts'
  local meta = ARGV[3] .. id .. ':meta'
  if redis.call('HEXISTS', meta, 'done') == 0 then
    local total = redis.call('HGET', meta, 'total') or '0'
    local first = redis.call('HGET', meta, 'first_seen_ms') or '0'
    local seqs = redis.call('HKEYS', parts)
    redis.call('DEL', parts)
    redis.call('HSET', meta, 'done', 'timed_out')
    redis.call('EXPIRE', meta, ARGV[4])
    out[#out + 1] = id
    out[#out + 1] = total
    out[#out + 1] = first
    out[#out + 1] = table.concat(seqs, ',')
  end
end
return out
