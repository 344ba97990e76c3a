-- Helpers put before every script when it is loaded (thunderpush/cluster/scripts.py).
-- None of them touches a key: each script names every key it uses in its own
-- text, from KEYS, so that what it touches is what it declares.

-- Redis's clock, in seconds and in milliseconds.
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function is_presence(channel)
  return string.sub(channel, 1, 9) == 'presence-'
end
-- A field of a bus message: its length in bytes, a colon, the bytes
-- (thunderpush/cluster/bus.py).
local function field(text)
  return #text .. ':' .. text
end
-- Presence event number ``seq``: ``kind`` 'a' (``user`` came, with its
-- ``info``, '' for none) or 'r' (it left), as the channel's route carries it.
local function presence_event(kind, channel, user, seq, info)
  local message = kind .. field(channel) .. field(user) .. field(tostring(seq))
  if kind == 'a' then
    message = message .. field(info or '')
  end
  return message
end
-- The node and the user of a channel's member "<node> <user>".
local function member_parts(member)
  local space = string.find(member, ' ', 1, true)
  return string.sub(member, 1, space - 1), string.sub(member, space + 1)
end
-- The members "<node> <user>" of ``user`` on the nodes ARGV[first..last].
local function members_on(user, first, last)
  local out = {}
  for i = first, last do
    out[#out + 1] = ARGV[i] .. ' ' .. user
  end
  return out
end
-- Whether any of ``values`` (a ZMSCORE's or HMGET's answer) is set.
local function any(values)
  for i = 1, #values do
    if values[i] then
      return true
    end
  end
  return false
end
-- The sum of ``values`` (an HMGET's answer of counts), a missing one as 0.
local function total(values)
  local sum = 0
  for i = 1, #values do
    sum = sum + (tonumber(values[i]) or 0)
  end
  return sum
end
