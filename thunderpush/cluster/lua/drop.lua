-- DROP: takes a node out of the cluster, once its records are forgotten (it
-- died) or as it leaves, and tells the other nodes.
--
-- KEYS[1]   tp:{nodes}        node -> when Redis last heard from it
-- KEYS[2]   tp:{nodes}:gone   node -> when it was forgotten (kept a day)
-- ARGV[1]   the node
-- ARGV[2]   the nodes' route, tp/{nodes}
-- ARGV[3]   '1' if it died: marked forgotten, so that a node only cut off
--           learns it when it is back (BEAT), and rewrites its records
local nodes, gone, node = KEYS[1], KEYS[2], ARGV[1]
redis.call('ZREM', nodes, node)
if ARGV[3] == '1' then
  redis.call('ZADD', gone, now(), node)
end
redis.call('PUBLISH', ARGV[2], 'l' .. field(node))
return 1
