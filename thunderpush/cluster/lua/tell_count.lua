-- TELL_COUNT: tells a channel's cluster-wide subscription count on its route,
-- if it changed since it was last told, at most once an interval whichever
-- node asks (--subscription-count; thunderpush/core/counts.py).
--
-- KEYS[1]   tp:{T}:n    node -> the channel's connections on that node
-- KEYS[2]   tp:{T}:sc   the count last told ("c") and when, Redis ms ("t")
-- ARGV[1]   the interval, in ms
-- ARGV[2]   the channel
-- ARGV[3]   its route, tp/{T}
-- ARGV[4..] the live nodes (the caller among them)
--
-- Answers {1, count} if it told the count (the caller tells the webhooks),
-- {0, count} if the count is the one last told, {2, ms} if the last was told
-- less than an interval ago (ask again after ``ms``).
local counts, told = KEYS[1], KEYS[2]
local interval, channel, route = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local count = 0
if #ARGV > 3 then
  count = total(redis.call('HMGET', counts, unpack(ARGV, 4)))
end
local last = redis.call('HMGET', told, 'c', 't')
local at = now_ms()
if last[2] and at - tonumber(last[2]) < interval then
  return {2, interval - (at - tonumber(last[2]))}
end
-- No record is a count of 0 told (as on one process): the record of a 0
-- expires after the interval, and a node that was told to wait, asking again
-- then, must not tell the 0 a second time.
if (tonumber(last[1]) or 0) == count then
  return {0, count}
end
redis.call('HSET', told, 'c', count, 't', at)
-- Kept while the channel is used; a channel left empty forgets it.
redis.call('PEXPIRE', told, count > 0 and 86400000 or interval)
redis.call('PUBLISH', route, 'n' .. field(channel) .. field(tostring(count)))
return {1, count}
