-- COUNT: sets a node's count of a name's connections and answers the
-- transition it makes for the cluster, for the webhooks: each transition is
-- answered to exactly one node, the one whose write made it.
--
-- KEYS[1]   tp:{T}:n    node -> the name's connections on that node
-- ARGV[1]   the node
-- ARGV[2]   its count (0 removes its field)
-- ARGV[3]   a user's watch route, tp/{T}w (a channel: none)
-- ARGV[4]   the user
--
-- Answers 1 if the name went from no node to some, -1 if from some to
-- none, else 0; a user's transition is also told on its watch route, to the
-- nodes where a connection watches it (thunderpush/core/watchlist.py).
local counts, node, count = KEYS[1], ARGV[1], tonumber(ARGV[2])
local had, has = redis.call('HEXISTS', counts, node) == 1, count > 0
if has then
  redis.call('HSET', counts, node, count)
else
  redis.call('HDEL', counts, node)
end
if had == has or redis.call('HLEN', counts) > (has and 1 or 0) then
  return 0
end
if ARGV[3] then
  redis.call('PUBLISH', ARGV[3], 'w' .. field(ARGV[4]) .. field(has and '1' or '0'))
end
return has and 1 or -1
