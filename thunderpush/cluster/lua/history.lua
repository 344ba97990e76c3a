-- HISTORY: reads a channel's stream.
--
-- KEYS[1]   tp:{T}:h    the kept messages
-- KEYS[2]   tp:{T}:hm   the stream: epoch, offset of the last message
-- ARGV[1]   how long messages are kept, in seconds: older ones are skipped
-- ARGV[2]   the offset to read after ('' for all)
--
-- Answers the epoch ('' when there is no stream) and offset, then the offset
-- and payload of each message after ARGV[2] kept for less than ARGV[1],
-- oldest first (they follow each other: a stream loses messages only at its
-- start).
local list, meta = KEYS[1], KEYS[2]
local keep, since = tonumber(ARGV[1]), tonumber(ARGV[2]) or -1
local epoch, offset = unpack(redis.call('HMGET', meta, 'epoch', 'offset'))
if not epoch then
  return {'', 0}
end
local out, oldest = {epoch, tonumber(offset)}, now_ms() - keep * 1000
for _, text in ipairs(redis.call('LRANGE', list, 0, -1)) do
  local a = string.find(text, '\n', 1, true)
  local b = string.find(text, '\n', a + 1, true)
  local at, kept = tonumber(string.sub(text, 1, a - 1)), tonumber(string.sub(text, a + 1, b - 1))
  if kept > oldest and at > since then
    out[#out + 1] = at
    out[#out + 1] = string.sub(text, b + 1)
  end
end
return out
