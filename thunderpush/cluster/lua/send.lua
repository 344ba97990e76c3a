-- SEND: publishes a message on a name's route and counts the name's
-- connections on the other live nodes: a channel's subscribed connections,
-- or a user's.  A publish is this one round trip.
--
-- KEYS[1]   tp:{T}:n    node -> the name's connections on that node
-- ARGV[1]   the name's route, tp/{T}
-- ARGV[2]   the message (thunderpush/cluster/bus.py)
-- ARGV[3..] the live nodes but the caller (none: nothing is counted)
--
-- Answers the count.
local count = 0
if #ARGV > 2 then
  count = total(redis.call('HMGET', KEYS[1], unpack(ARGV, 3)))
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return count
