-- BEAT: a node's heartbeat.  Its arrival (new, or back after it was
-- forgotten or Redis lost it) is told to the other nodes.
--
-- KEYS[1]   tp:{nodes}        node -> when Redis last heard from it
-- KEYS[2]   tp:{nodes}:gone   node -> when it was forgotten (kept a day)
-- ARGV[1]   the node
-- ARGV[2]   the presence TTL, in seconds
-- ARGV[3]   the nodes' route, tp/{nodes}
--
-- Answers 1 if this node had been forgotten (else 0), the nodes heard from
-- within the TTL (this one among them), and the others: the dead, which some
-- live node forgets (thunderpush/cluster/departures.py).
local nodes, gone = KEYS[1], KEYS[2]
local node, ttl = ARGV[1], tonumber(ARGV[2])
local t = now()
local forgotten = redis.call('ZREM', gone, node)
redis.call('ZREMRANGEBYSCORE', gone, '-inf', t - 86400)
if redis.call('ZADD', nodes, t, node) == 1 then
  redis.call('PUBLISH', ARGV[3], 'j' .. field(node))
end
local live = redis.call('ZRANGEBYSCORE', nodes, t - ttl, '+inf')
local dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. (t - ttl))
return {forgotten, live, dead}
