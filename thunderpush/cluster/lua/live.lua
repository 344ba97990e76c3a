-- LIVE: the nodes heard from within the presence TTL, by Redis's clock, for
-- the reads that span names (thunderpush/cluster/presence.py).
--
-- KEYS[1]   tp:{nodes}   node -> when Redis last heard from it
-- ARGV[1]   the presence TTL, in seconds
local nodes, ttl = KEYS[1], tonumber(ARGV[1])
return redis.call('ZRANGEBYSCORE', nodes, now() - ttl, '+inf')
