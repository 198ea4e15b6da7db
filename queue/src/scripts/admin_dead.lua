-- admin_dead.lua: an operator's action on dead letters of one partition, atomically: retry
-- (the dead letter becomes a new first attempt in the partition's stream, keeping its error
-- history) or delete. Each dead letter is moved or removed exactly once: the XADD and the XDEL
-- of one letter happen in the same step, and a letter already gone is skipped.
-- KEYS[1] = partition stream
-- KEYS[2] = partition dead-letter stream
-- ARGV[1] = 'retry' or 'delete'
-- ARGV[2] = dead-letter entry id, or '' for the oldest ARGV[3] dead letters
-- ARGV[3] = most dead letters handled in this call
-- Returns { handled, dead letters left in the partition }.
local letters
if ARGV[2] ~= '' then
  letters = redis.call('XRANGE', KEYS[2], ARGV[2], ARGV[2])
else
  letters = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[3]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local handled = 0
for _, letter in ipairs(letters) do
  local f = {}
  for i = 1, #letter[2], 2 do f[letter[2][i]] = letter[2][i + 1] end
  if ARGV[1] == 'retry' and not (f['id'] and f['payload']) then
    -- Not a dead letter the queue wrote (no job to run): left where it is; retrying stops here.
    break
  end
  if ARGV[1] == 'retry' then
    local entry = { 'id', f['id'], 'payload', f['payload'], 'attempt', '1',
      'enqueued_at', string.format('%.0f', now) }
    if f['history'] and f['history'] ~= '[]' then
      entry[#entry + 1] = 'history'
      entry[#entry + 1] = f['history']
    end
    redis.call('XADD', KEYS[1], '*', unpack(entry))
  end
  redis.call('XDEL', KEYS[2], letter[1])
  handled = handled + 1
end
return { handled, redis.call('XLEN', KEYS[2]) }
