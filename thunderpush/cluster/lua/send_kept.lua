-- SEND_KEPT: keeps a payload in a channel's stream (starting a new stream,
-- with a new epoch, if there is none), publishes it on the channel's route
-- with its position (kind 'h' before the message's head), and counts the
-- channel's subscribed connections on the other live nodes.
--
-- KEYS[1]   tp:{T}:n    node -> the channel's subscribed connections there
-- KEYS[2]   tp:{T}:h    the kept messages
-- KEYS[3]   tp:{T}:hm   the stream: epoch, offset of the last message
-- ARGV[1]   the channel's route, tp/{T}
-- ARGV[2]   the message's head (kind 'c' or 'p' and its fields)
-- ARGV[3]   the payload
-- ARGV[4]   how many messages the stream keeps
-- ARGV[5]   how long it keeps them, in seconds
-- ARGV[6]   three hex digits, random, for a new stream's epoch
-- ARGV[7..] the live nodes but the caller
--
-- Answers the count.
local list, meta = KEYS[2], KEYS[3]
local size, keep, payload = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[3]
local count = 0
if #ARGV > 6 then
  count = total(redis.call('HMGET', KEYS[1], unpack(ARGV, 7)))
end
local epoch, offset = unpack(redis.call('HMGET', meta, 'epoch', 'offset'))
if not epoch then
  -- Unique: Redis's clock (seconds, then microseconds) and the caller's
  -- random digits, as 16 hex digits.
  local t = redis.call('TIME')
  epoch = string.format('%08x%s%05x', tonumber(t[1]) % 4294967296, ARGV[6], tonumber(t[2]))
  offset = 0
end
offset = tonumber(offset) + 1
redis.call('HSET', meta, 'epoch', epoch, 'offset', offset)
redis.call('RPUSH', list, offset .. '\n' .. now_ms() .. '\n' .. payload)
redis.call('LTRIM', list, -size, -1)
local ms = math.ceil(keep * 1000)
redis.call('PEXPIRE', list, ms)
redis.call('PEXPIRE', meta, ms)
local position = 'h' .. field(epoch) .. field(tostring(offset))
redis.call('PUBLISH', ARGV[1], position .. ARGV[2] .. payload)
return count
