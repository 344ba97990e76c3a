-- SEND_LAST: keeps a channel's last publication (Pusher's cache channels) for
-- a while, then, as SEND does, publishes the message on the channel's route
-- and counts the channel's subscribed connections on the other live nodes.
-- Kept where it is published, so a new subscriber on any node reads it.
--
-- KEYS[1]   tp:{T}:n    node -> the channel's subscribed connections there
-- KEYS[2]   tp:{T}:l    the last publication
-- ARGV[1]   the channel's route, tp/{T} ('': publish nothing, count nothing;
--           SEND_KEPT did both)
-- ARGV[2]   the message's head (kind 'c' or 'p' and its fields)
-- ARGV[3]   the payload
-- ARGV[4]   the last publication's event, as a field (the bus's); its payload follows
-- ARGV[5]   how long it is kept, in milliseconds
-- ARGV[6..] the live nodes but the caller
--
-- Answers the count.
local payload = ARGV[3]
redis.call('SET', KEYS[2], ARGV[4] .. payload, 'PX', ARGV[5])
if ARGV[1] == '' then
  return 0
end
local count = 0
if #ARGV > 5 then
  count = total(redis.call('HMGET', KEYS[1], unpack(ARGV, 6)))
end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. payload)
return count
