-- MEMBER: records or removes a node's user in a channel.  In a presence
-- channel, if asked to, the user's first arrival on any live node (with its
-- info) or its departure from the last one is announced on the channel's
-- route, numbered by the channel's event counter.
--
-- KEYS[1]   tp:{T}:m    "<node> <user>" -> ms of its first subscription
-- KEYS[2]   tp:{T}:i    "<node> <user>" -> its user_info (JSON)
-- KEYS[3]   tp:{T}:s    the number of the channel's last presence event
-- ARGV[1]   the node
-- ARGV[2]   the user
-- ARGV[3]   the record's score (ms) to record it, '' to remove it
-- ARGV[4]   '1' to announce a change in a presence channel
-- ARGV[5]   the user's info: '' for a member without one (a Thunderpush one:
--           nothing more is done); else, on an arrival, the user_info as
--           JSON, kept, and on a departure any text: the kept one is deleted
-- ARGV[6]   the member cap of a presence channel (0: none)
-- ARGV[7]   the channel
-- ARGV[8]   its route, tp/{T}
-- ARGV[9..] the live nodes but the caller
--
-- An arrival in a presence channel that has ARGV[6] users on live nodes
-- already, this one not among them, records nothing and answers -1 (the
-- member cap, --max-presence-members); else the answer is 2 if the record
-- changed and the change was announced (the webhooks' member_added or
-- member_removed, told by this node alone), 1 if it changed unannounced, 0 if
-- not.
local members, infos, seq = KEYS[1], KEYS[2], KEYS[3]
local node, user, score, loud, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cap, channel, route = tonumber(ARGV[6]) or 0, ARGV[7], ARGV[8]
local member = node .. ' ' .. user
local presence = is_presence(channel)
local others = members_on(user, 9, #ARGV)
local changed, kind
if score ~= '' then
  if cap > 0 and presence and not redis.call('ZSCORE', members, member) then
    -- Full: ``cap`` users on live nodes, this one not among them.
    local alive, seen, count = {[node] = true}, {}, 0
    for i = 9, #ARGV do
      alive[ARGV[i]] = true
    end
    for _, held in ipairs(redis.call('ZRANGE', members, 0, -1)) do
      local where, other = member_parts(held)
      if alive[where] and not seen[other] then
        if other == user then
          count = -1
          break
        end
        seen[other] = true
        count = count + 1
      end
    end
    if count >= cap then
      return -1
    end
  end
  changed, kind = redis.call('ZADD', members, 'NX', score, member), 'a'
  if changed == 1 and presence then
    redis.call('PERSIST', seq)
  end
else
  changed, kind = redis.call('ZREM', members, member), 'r'
end
if info ~= '' then
  if kind == 'a' then
    redis.call('HSET', infos, member, info)
  else
    redis.call('HDEL', infos, member)
  end
end
if changed == 1 and loud == '1' and presence
    and not (#others > 0 and any(redis.call('ZMSCORE', members, unpack(others)))) then
  local number = redis.call('INCR', seq)
  redis.call('PUBLISH', route, presence_event(kind, channel, user, number, kind == 'a' and info))
  changed = 2
end
if kind == 'r' and presence and redis.call('EXISTS', members) == 0 then
  -- No member left: the counter goes a day later (an event still on its way
  -- must keep its number until then), unless a member comes back first.
  redis.call('EXPIRE', seq, 86400)
end
return changed
