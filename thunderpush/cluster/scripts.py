"""The Lua scripts a node runs in Redis, and the keys they keep.

Each read or write that spans nodes is one script, so it is one round trip
and atomic: a publish counts its receivers and publishes in the same step, and
a presence-channel join or leave decides "first/last of this user anywhere"
and announces it without a race between nodes.  Keys (``<app>`` is the API
key, ``<node>`` a node's id)::

    tp:nodes                 zset  node -> when Redis last heard from it
    tp:<app>:<node>:u        hash  user -> its connections on the node
    tp:<app>:<node>:c        hash  channel -> connections in it on the node
    tp:<app>:c:<channel>     zset  "<node> <user>" -> when it first subscribed
    tp:<app>:<node>:i        hash  "<channel> <user>" -> the user's Pusher
                                   ``user_info`` (JSON) in a presence channel,
                                   for the members that have one
    tp:<app>:seq             int   the number of the last presence event
    tp:<app>:h:<channel>     list  a channel's kept messages, oldest first, each
                                   "<offset>\\n<ms kept, Redis time>\\n<payload>"
    tp:<app>:hm:<channel>    hash  its stream: epoch, offset (of the last message)
    tp:epochs                int   streams started, to make each epoch unique
    tp:forgotten:<node>      a node that others forgot (for a day)
    tp:<app>:bus             the app's pub/sub channel, for what every node
                             hears: presence events (``thunderpush.cluster.bus``)
    tp/<n>:<app>:c:<channel> a channel's pub/sub channel, and ``:u:<user>`` a
                             user's (``route``); ``<n>`` is the app key's length

Pub/sub channels are not keys: a route is named once, by ``route``, and
handed to the scripts that publish on it (never rebuilt in Lua).

A channel that keeps history (``thunderpush.core.history``) has both ``h``
and ``hm`` keys expire ``ttl`` after its last publish, so an idle stream goes
whole and its next publish starts a new epoch; readers skip the messages kept
longer than ``ttl`` ago.

Readers count only the nodes heard from within the presence TTL; a node's
heartbeat forgets the nodes that were not (``BEAT``).  Webhook events
(``COUNTS``, and ``forget`` for a node that died or left) count every node in
``tp:nodes`` instead, dead ones not yet forgotten included, so that a channel
or user that a dead node held is vacated once, when the node is forgotten,
and never occupied twice in between.  Time is Redis's own
clock, so the nodes' clocks need not agree.  The scripts touch keys they do not
declare, which a single Redis (not Redis Cluster) allows.
"""

from __future__ import annotations

NODES = "tp:nodes"


def bus_channel(app: str) -> str:
    return f"tp:{app}:bus"


def route(app: str, kind: str, name: str) -> bytes:
    """The pub/sub channel of ``app``'s channel (``kind`` "c") or user ("u") ``name``.

    The app key is length-prefixed, so no app, channel or user can make another's
    name; ``tp/`` sets routes apart from the app buses (``tp:``).
    """
    key = app.encode()
    return b"tp/%d:%b:%b:%b" % (len(key), key, kind.encode(), name.encode("utf-8", "surrogatepass"))


def user_key(app: str, node: str) -> str:
    return f"tp:{app}:{node}:u"


def channel_count_key(app: str, node: str) -> str:
    return f"tp:{app}:{node}:c"


_COMMON = """
local P = 'tp:'
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function live(ttl)
  return redis.call('ZRANGEBYSCORE', 'tp:nodes', now() - ttl, '+inf')
end
local function is_presence(channel)
  return string.sub(channel, 1, 9) == 'presence-'
end
-- Whether another of ``nodes`` than ``node`` has ``user`` in ``channel``.
local function elsewhere(app, channel, user, nodes, node)
  local key = P .. app .. ':c:' .. channel
  for _, other in ipairs(nodes) do
    if other ~= node and redis.call('ZSCORE', key, other .. ' ' .. user) then
      return true
    end
  end
  return false
end
-- Connections under ``name`` in the ``field`` hash ("c" or "u") of the live
-- nodes other than ``node``.
local function elsewhere_count(ttl, app, node, field, name)
  local count = 0
  for _, other in ipairs(live(ttl)) do
    if other ~= node then
      local here = redis.call('HGET', P .. app .. ':' .. other .. ':' .. field, name)
      count = count + (tonumber(here) or 0)
    end
  end
  return count
end
-- Whether presence ``channel`` has ``cap`` users on live nodes, ``user`` not among them.
local function full(ttl, app, channel, user, cap)
  local alive, seen, count = {}, {}, 0
  for _, node in ipairs(live(ttl)) do
    alive[node] = true
  end
  for _, member in ipairs(redis.call('ZRANGE', P .. app .. ':c:' .. channel, 0, -1)) do
    local space = string.find(member, ' ', 1, true)
    local node, other = string.sub(member, 1, space - 1), string.sub(member, space + 1)
    if alive[node] then
      if other == user then
        return false
      end
      if not seen[other] then
        seen[other] = true
        count = count + 1
      end
    end
  end
  return count >= cap
end
-- A field of a bus message: its length in bytes, a colon, the bytes (see ``bus``).
local function bus_field(text)
  return #text .. ':' .. text
end
-- Publishes presence event ``kind`` about ``user``, with its ``user_info`` if it has one.
local function announce(app, kind, channel, user, info)
  local seq = tostring(redis.call('INCR', P .. app .. ':seq'))
  local message = kind .. bus_field(channel) .. bus_field(user) .. bus_field(seq)
  if kind == 'a' then
    message = message .. bus_field(info or '')
  end
  redis.call('PUBLISH', P .. app .. ':bus', message)
end
-- The ``field`` hashes ("u" or "c") of ``app`` on the nodes in tp:nodes but ``node``.
local function others(app, field, node)
  local keys = {}
  for _, other in ipairs(redis.call('ZRANGE', 'tp:nodes', 0, -1)) do
    if other ~= node then
      keys[#keys + 1] = P .. app .. ':' .. other .. ':' .. field
    end
  end
  return keys
end
local function held(keys, name)
  for _, key in ipairs(keys) do
    if redis.call('HEXISTS', key, name) == 1 then
      return true
    end
  end
  return false
end
-- Of ``names`` (in ``node``'s ``field`` hash), those that no other node holds.
local function unheld(app, field, node, names)
  local keys, out = others(app, field, node), {}
  for _, name in ipairs(names) do
    if not held(keys, name) then
      out[#out + 1] = name
    end
  end
  return out
end
-- Removes every record of ``node`` in ``app``, announcing the presence-channel
-- users that no live node has any more.  If ``watched`` (the app has a
-- webhook), answers {app, channels, users}: those that no node has any more.
local function forget(app, node, ttl, watched)
  local nodes = live(ttl)
  local counts = P .. app .. ':' .. node .. ':c'
  local prefix = node .. ' '
  for _, channel in ipairs(redis.call('HKEYS', counts)) do
    local key = P .. app .. ':c:' .. channel
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if string.sub(member, 1, #prefix) == prefix then
        redis.call('ZREM', key, member)
        local user = string.sub(member, #prefix + 1)
        if is_presence(channel) and not elsewhere(app, channel, user, nodes, node) then
          announce(app, 'r', channel, user)
        end
      end
    end
  end
  local users = P .. app .. ':' .. node .. ':u'
  local gone = nil
  if watched then
    gone = {app, unheld(app, 'c', node, redis.call('HKEYS', counts)),
            unheld(app, 'u', node, redis.call('HKEYS', users))}
  end
  redis.call('DEL', counts, users, P .. app .. ':' .. node .. ':i')
  return gone
end
-- Calls ``forget`` for each (app, watched) pair of ARGV from index 3; answers what they answered.
local function forget_all(node, ttl)
  local out = {}
  for i = 3, #ARGV, 2 do
    out[#out + 1] = forget(ARGV[i], node, ttl, ARGV[i + 1] == '1')
  end
  return out
end
"""

# ARGV: ttl, app, node, field ("c", "u" or ""), name, message, route.
# Publishes ``message`` on ``route`` (the channel's or user's); answers how
# many connections other live nodes have under ``name`` in their ``field`` hash.
SEND = (
    _COMMON
    + """
local ttl, app, node, field, name = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local count = 0
if field ~= '' then
  count = elsewhere_count(ttl, app, node, field, name)
end
redis.call('PUBLISH', ARGV[7], ARGV[6])
return count
"""
)

# Channel streams: the keys of one, and the parts of one of its entries.
_STREAMS = """
local function stream_keys(app, channel)
  return P .. app .. ':h:' .. channel, P .. app .. ':hm:' .. channel
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- An entry's offset, when it was kept (ms), and where its payload starts.
local function entry(text)
  local a = string.find(text, '\\n', 1, true)
  local b = string.find(text, '\\n', a + 1, true)
  return tonumber(string.sub(text, 1, a - 1)), tonumber(string.sub(text, a + 1, b - 1)), b + 1
end
"""

# ARGV: ttl, app, node, channel, size, keep ttl (seconds), payload, the
# bus message's head (kind ``c`` or ``p`` and its fields, see ``bus``), and the
# channel's route.  Keeps the payload in the channel's stream (starting a new
# one, with a new epoch, if there is none), publishes it on the route with its position (kind ``h``
# before the head), and answers how many connections other live nodes have
# in the channel.
SEND_KEPT = (
    _COMMON
    + _STREAMS
    + """
local ttl, app, node, channel = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local size, keep, payload = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local list, meta = stream_keys(app, channel)
local epoch, offset = unpack(redis.call('HMGET', meta, 'epoch', 'offset'))
if not epoch then
  -- Unique: Redis's clock (seconds, then microseconds) and a counter of
  -- streams started, as 16 hex digits.
  local t, n = redis.call('TIME'), redis.call('INCR', 'tp:epochs')
  epoch = string.format('%08x%03x%05x', tonumber(t[1]) % 4294967296, n % 4096, tonumber(t[2]))
  offset = 0
end
offset = tonumber(offset) + 1
redis.call('HSET', meta, 'epoch', epoch, 'offset', offset)
redis.call('RPUSH', list, offset .. '\\n' .. now_ms() .. '\\n' .. payload)
redis.call('LTRIM', list, -size, -1)
local ms = math.ceil(keep * 1000)
redis.call('PEXPIRE', list, ms)
redis.call('PEXPIRE', meta, ms)
local position = 'h' .. bus_field(epoch) .. bus_field(tostring(offset))
redis.call('PUBLISH', ARGV[9], position .. ARGV[8] .. payload)
return elsewhere_count(ttl, app, node, 'c', channel)
"""
)

# ARGV: app, channel, keep ttl (seconds), since ("" for all).  Answers the
# channel's epoch ("" when it has no stream) and offset, then the offset and
# payload of each message after ``since`` kept for less than ``ttl``, oldest
# first (they follow each other: a stream loses messages only at its start).
HISTORY = (
    _COMMON
    + _STREAMS
    + """
local app, channel, keep = ARGV[1], ARGV[2], tonumber(ARGV[3])
local since = tonumber(ARGV[4]) or -1
local list, meta = stream_keys(app, channel)
local epoch, offset = unpack(redis.call('HMGET', meta, 'epoch', 'offset'))
if not epoch then
  return {'', 0}
end
local out, oldest = {epoch, tonumber(offset)}, now_ms() - keep * 1000
for _, text in ipairs(redis.call('LRANGE', list, 0, -1)) do
  local at, kept, start = entry(text)
  if kept > oldest and at > since then
    out[#out + 1] = at
    out[#out + 1] = string.sub(text, start)
  end
end
return out
"""
)

# ARGV: ttl, app, node, channel, user, score ("" to leave), loud ("1" or ""),
# info, cap.  Records or removes the node's ``user`` in ``channel``; in a presence
# channel, if loud, the user's arrival anywhere (with its info) or departure
# from everywhere is announced.  ``info`` is "" for a member without
# ``user_info`` (Thunderpush ones: nothing more is done); else, on an
# arrival, the ``user_info`` as JSON, kept, and on a departure any text: the
# kept one is deleted.  An arrival in a presence channel that has ``cap``
# (> 0) users on live nodes already, not this one, records nothing and
# answers -1 (the member cap, ``--max-presence-members``); else the answer is
# 1 if the record changed, 0 if not.
MEMBER = (
    _COMMON
    + """
local ttl, app, node = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local channel, user, score, loud, info = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local cap = tonumber(ARGV[9]) or 0
local key = P .. app .. ':c:' .. channel
local changed, kind
if score ~= '' then
  if cap > 0 and is_presence(channel) and not redis.call('ZSCORE', key, node .. ' ' .. user)
      and full(ttl, app, channel, user, cap) then
    return -1
  end
  changed, kind = redis.call('ZADD', key, 'NX', score, node .. ' ' .. user), 'a'
else
  changed, kind = redis.call('ZREM', key, node .. ' ' .. user), 'r'
end
if info ~= '' then
  local infos, field = P .. app .. ':' .. node .. ':i', channel .. ' ' .. user
  if kind == 'a' then
    redis.call('HSET', infos, field, info)
  else
    redis.call('HDEL', infos, field)
  end
end
if changed == 1 and loud == '1' and is_presence(channel)
    and not elsewhere(app, channel, user, live(ttl), node) then
  announce(app, kind, channel, user, kind == 'a' and info)
end
return changed
"""
)

# ARGV: ttl, node, then app, watched ("1" or "") pairs.  The heartbeat: the
# node is alive now; nodes not heard from within ttl are forgotten (and marked
# so for a day, in case one was only cut off and comes back).  Answers 1 if
# this node had been forgotten, the nodes it forgot, and for each of those the
# {app, channels, users} that no node has any more (watched apps only).
BEAT = (
    _COMMON
    + """
local ttl, node = tonumber(ARGV[1]), ARGV[2]
local t = now()
redis.call('ZADD', 'tp:nodes', t, node)
local forgotten, vacated = {}, {}
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', 'tp:nodes', '-inf', '(' .. (t - ttl))) do
  redis.call('ZREM', 'tp:nodes', gone)
  redis.call('SET', 'tp:forgotten:' .. gone, 1, 'EX', 86400)
  for _, answer in ipairs(forget_all(gone, ttl)) do
    vacated[#vacated + 1] = answer
  end
  forgotten[#forgotten + 1] = gone
end
return {redis.call('DEL', 'tp:forgotten:' .. node), forgotten, vacated}
"""
)

# ARGV: ttl, node, then app, watched pairs.  The node leaves the cluster;
# answers as BEAT's third part does.
GOODBYE = (
    _COMMON
    + """
local ttl, node = tonumber(ARGV[1]), ARGV[2]
redis.call('ZREM', 'tp:nodes', node)
return forget_all(node, ttl)
"""
)

# ARGV: app, node, field ("u" or "c"), then name, count pairs.  Sets the
# node's count of each name (0 removes it); answers, for each, 1 if the name
# went from no node to some, -1 if from some node to none, else 0: each
# transition of the cluster is answered to exactly one node (webhooks).
COUNTS = (
    _COMMON
    + """
local app, node, field = ARGV[1], ARGV[2], ARGV[3]
local key, keys, out = P .. app .. ':' .. node .. ':' .. field, others(app, field, node), {}
for i = 4, #ARGV, 2 do
  local name, count = ARGV[i], tonumber(ARGV[i + 1])
  local had, has = redis.call('HEXISTS', key, name) == 1, count > 0
  if has then
    redis.call('HSET', key, name, count)
  else
    redis.call('HDEL', key, name)
  end
  local change = 0
  if had ~= has and not held(keys, name) then
    change = has and 1 or -1
  end
  out[#out + 1] = change
end
return out
"""
)

# ARGV: ttl, app.  Distinct users on live nodes.
USER_COUNT = (
    _COMMON
    + """
local ttl, app = tonumber(ARGV[1]), ARGV[2]
local seen, count = {}, 0
for _, node in ipairs(live(ttl)) do
  for _, user in ipairs(redis.call('HKEYS', P .. app .. ':' .. node .. ':u')) do
    if not seen[user] then
      seen[user] = true
      count = count + 1
    end
  end
end
return count
"""
)

# ARGV: ttl, app, user.  1 if a live node has a connection of ``user``.
IS_ONLINE = (
    _COMMON
    + """
local ttl, app, user = tonumber(ARGV[1]), ARGV[2], ARGV[3]
for _, node in ipairs(live(ttl)) do
  if redis.call('HEXISTS', P .. app .. ':' .. node .. ':u', user) == 1 then
    return 1
  end
end
return 0
"""
)

# ARGV: ttl, app, channel, and "1" for the users' infos.  Answers the app's
# presence event number, then the users in ``channel`` on live nodes, each
# once, in order of first subscription; with infos, each user is followed by
# its ``user_info`` (JSON, or nil when it has none): the first a node keeps.
CHANNEL_USERS = (
    _COMMON
    + """
local ttl, app, channel, with_info = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4] == '1'
local alive, seen = {}, {}
for _, node in ipairs(live(ttl)) do
  alive[node] = true
end
local out = {tonumber(redis.call('GET', P .. app .. ':seq')) or 0}
for _, member in ipairs(redis.call('ZRANGE', P .. app .. ':c:' .. channel, 0, -1)) do
  local space = string.find(member, ' ', 1, true)
  local node, user = string.sub(member, 1, space - 1), string.sub(member, space + 1)
  if alive[node] then
    if not seen[user] then
      out[#out + 1] = user
      seen[user] = #out + 1
      if with_info then
        out[#out + 1] = false
      end
    end
    if with_info and not out[seen[user]] then
      local infos = P .. app .. ':' .. node .. ':i'
      out[seen[user]] = redis.call('HGET', infos, channel .. ' ' .. user)
    end
  end
end
return out
"""
)

# ARGV: ttl, app, prefix.  The connections per channel summed over live
# nodes, of the channels whose names start with ``prefix``, as a flat list
# (name, count, name, count...).
CHANNEL_COUNTS = (
    _COMMON
    + """
local ttl, app, prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local totals, names = {}, {}
for _, node in ipairs(live(ttl)) do
  local counts = redis.call('HGETALL', P .. app .. ':' .. node .. ':c')
  for i = 1, #counts, 2 do
    local name = counts[i]
    if string.sub(name, 1, #prefix) == prefix then
      if not totals[name] then
        totals[name] = 0
        names[#names + 1] = name
      end
      totals[name] = totals[name] + tonumber(counts[i + 1])
    end
  end
end
local out = {}
for _, name in ipairs(names) do
  out[#out + 1] = name
  out[#out + 1] = totals[name]
end
return out
"""
)

# ARGV: ttl, app, user.  The channels in which a live node has ``user``, each once.
USER_CHANNELS = (
    _COMMON
    + """
local ttl, app, user = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local seen, out = {}, {}
for _, node in ipairs(live(ttl)) do
  local member = node .. ' ' .. user
  for _, channel in ipairs(redis.call('HKEYS', P .. app .. ':' .. node .. ':c')) do
    if not seen[channel] and redis.call('ZSCORE', P .. app .. ':c:' .. channel, member) then
      seen[channel] = true
      out[#out + 1] = channel
    end
  end
end
return out
"""
)

# ARGV: app, node.  What Redis holds for the node: its users, its channels,
# and its (channel, user) memberships as a flat list.
RECORDS = """
local app, node = ARGV[1], ARGV[2]
local P = 'tp:' .. app .. ':'
local channels = redis.call('HKEYS', P .. node .. ':c')
local prefix, pairs = node .. ' ', {}
for _, channel in ipairs(channels) do
  for _, member in ipairs(redis.call('ZRANGE', P .. 'c:' .. channel, 0, -1)) do
    if string.sub(member, 1, #prefix) == prefix then
      pairs[#pairs + 1] = channel
      pairs[#pairs + 1] = string.sub(member, #prefix + 1)
    end
  end
end
return {redis.call('HKEYS', P .. node .. ':u'), channels, pairs}
"""

# What a node loads into Redis each time it connects.
ALL = (
    SEND,
    SEND_KEPT,
    HISTORY,
    MEMBER,
    BEAT,
    GOODBYE,
    COUNTS,
    USER_COUNT,
    IS_ONLINE,
    CHANNEL_USERS,
    CHANNEL_COUNTS,
    USER_CHANNELS,
    RECORDS,
)
