-- FORGET: removes a node's records of one name (a node that died, or this
-- one leaving).  In a presence channel, each of its users that no live node
-- has any more is announced as gone on the channel's route.
--
-- KEYS[1]   tp:{T}:n    node -> the name's connections on that node
-- KEYS[2]   tp:{T}:m    a channel's members (a user: KEYS[1] only)
-- KEYS[3]   tp:{T}:i    their user_info
-- KEYS[4]   tp:{T}:s    the number of the channel's last presence event
-- ARGV[1]   the node
-- ARGV[2]   the channel's route, tp/{T}   (a channel's; a user: ARGV[1] only)
-- ARGV[3]   the channel
-- ARGV[4]   k, how many live nodes follow (the node itself not among them)
-- ARGV[5..4+k]  the live nodes
-- ARGV[5+k..]   the node's users in the channel
-- (a user: ARGV[2] its watch route, ARGV[3] the user, told there if no node
-- holds it any more, as COUNT does)
--
-- Answers {1} if no node holds the name any more and this node did (the
-- webhooks' channel_vacated or user_offline, told once), else {0}; then the
-- users announced gone (the webhooks' member_removed, told once).
local counts, node = KEYS[1], ARGV[1]
local had = redis.call('HDEL', counts, node) == 1
local answer = {0}
if #KEYS > 1 then
  local members, infos, seq = KEYS[2], KEYS[3], KEYS[4]
  local route, channel, k = ARGV[2], ARGV[3], tonumber(ARGV[4])
  local presence = is_presence(channel)
  for i = 5 + k, #ARGV do
    local user = ARGV[i]
    local member = node .. ' ' .. user
    if redis.call('ZREM', members, member) == 1 then
      redis.call('HDEL', infos, member)
      local others = members_on(user, 5, 4 + k)
      if presence and not (k > 0 and any(redis.call('ZMSCORE', members, unpack(others)))) then
        local number = redis.call('INCR', seq)
        redis.call('PUBLISH', route, presence_event('r', channel, user, number))
        answer[#answer + 1] = user
      end
    end
  end
  if presence and redis.call('EXISTS', members) == 0 then
    redis.call('EXPIRE', seq, 86400)  -- as MEMBER does
  end
end
if had and redis.call('EXISTS', counts) == 0 then
  if #KEYS == 1 and ARGV[2] then
    redis.call('PUBLISH', ARGV[2], 'w' .. field(ARGV[3]) .. field('0'))
  end
  answer[1] = 1
end
return answer
