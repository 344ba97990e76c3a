-- CHANNEL_USERS: the users in a channel on live nodes, each once, in order of
-- first subscription; a presence subscriber's member list.
--
-- KEYS[1]   tp:{T}:m    "<node> <user>" -> ms of its first subscription
-- KEYS[2]   tp:{T}:i    "<node> <user>" -> its user_info (JSON)
-- KEYS[3]   tp:{T}:s    the number of the channel's last presence event
-- ARGV[1]   '1' for the users' infos
-- ARGV[2..] the live nodes (the caller among them)
--
-- Answers the number of the channel's last presence event, then the users;
-- with infos, each user is followed by its user_info (JSON, or nil when it
-- has none): the first a node keeps.
local members, infos, seq = KEYS[1], KEYS[2], KEYS[3]
local with_info = ARGV[1] == '1'
local alive, seen = {}, {}
for i = 2, #ARGV do
  alive[ARGV[i]] = true
end
local out = {tonumber(redis.call('GET', seq)) or 0}
for _, member in ipairs(redis.call('ZRANGE', members, 0, -1)) do
  local node, user = member_parts(member)
  if alive[node] then
    if not seen[user] then
      out[#out + 1] = user
      seen[user] = #out + 1
      if with_info then
        out[#out + 1] = false
      end
    end
    if with_info and not out[seen[user]] then
      out[seen[user]] = redis.call('HGET', infos, member)
    end
  end
end
return out
