"""The Lua scripts of the Redis Streams event bus: each check-and-write is one atomic step.

Every key a script touches shares the project's hash tag (see ``redis_streams``), as Redis
Cluster requires of a script's keys. Times come from the server (``TIME``), so workers on
machines whose clocks differ agree on heartbeats.
"""

from __future__ import annotations

# After messages left a partition's stream (acknowledged or dead-lettered): trim what no
# consumer will read again, so the stream's length is its backlog (what publishers are bounded
# by). Kept: pending entries and those not yet delivered. KEYS[1] stream; ARGV[1] group.
_TRIM = """
local function trim(stream, group)
  local summary = redis.call('XPENDING', stream, group)
  local keep_from
  if summary[1] > 0 then
    keep_from = summary[2]
  else
    local last
    for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      local found = {}
      for i = 1, #info, 2 do found[info[i]] = info[i + 1] end
      if found['name'] == group then last = found['last-delivered-id'] end
    end
    if not last then return 0 end
    local ms, seq = string.match(last, '^(%d+)-(%d+)$')
    keep_from = ms .. '-' .. (tonumber(seq) + 1)
  end
  return redis.call('XTRIM', stream, 'MINID', keep_from)
end
"""

# Append messages unless a stream they go to holds ARGV[1] or more entries (0: no bound).
# KEYS: the streams; ARGV[2]: the number of messages, then per message the index of its stream
# in KEYS, its source, its number of events and its payload. Answers {'ok', ids} or
# {'full', stream, length}: then nothing was appended.
PUBLISH = """
local bound = tonumber(ARGV[1])
if bound > 0 then
  for _, key in ipairs(KEYS) do
    local length = redis.call('XLEN', key)
    if length >= bound then return {'full', key, length} end
  end
end
local ids = {}
for m = 0, tonumber(ARGV[2]) - 1 do
  local at = 3 + 4 * m
  ids[m + 1] = redis.call('XADD', KEYS[tonumber(ARGV[at])], '*',
    'source', ARGV[at + 1], 'rows', ARGV[at + 2], 'data', ARGV[at + 3])
end
return {'ok', ids}
"""

# Acknowledge entries ARGV[3...] of stream KEYS[1] for group ARGV[1], forget their noted
# errors (hash KEYS[2], fields ARGV[2] .. ':' .. id) and trim the stream.
ACK = (
    _TRIM
    + """
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
for i = 3, #ARGV do redis.call('HDEL', KEYS[2], ARGV[2] .. ':' .. ARGV[i]) end
trim(KEYS[1], ARGV[1])
return acked
"""
)

# Move entry ARGV[2] of stream KEYS[1] (group ARGV[1]) to the dead-letter stream KEYS[2]
# (capped near ARGV[3] entries) with its partition ARGV[4], source ARGV[5], rows ARGV[6],
# payload ARGV[7], reason ARGV[8] and delivery count ARGV[9]; the acknowledgement and the
# dead letter are one step. 0 (and nothing written) if the entry was no longer pending.
DEAD_LETTER = (
    _TRIM
    + """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[3], ARGV[4] .. ':' .. ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'partition', ARGV[4],
  'id', ARGV[2], 'source', ARGV[5], 'rows', ARGV[6], 'data', ARGV[7], 'reason', ARGV[8],
  'deliveries', ARGV[9])
trim(KEYS[1], ARGV[1])
return 1
"""
)

# A worker's heartbeat: worker ARGV[1] is alive for ARGV[2] ms more (sorted set KEYS[1] of
# workers by expiry, in server ms); workers past their expiry are dropped. Answers the live
# workers, by name.
HEARTBEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# Leave the workers: ARGV[1] out of KEYS[1].
LEAVE = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

# Extend the leases KEYS held by token ARGV[1] to ARGV[2] ms; per key, 1 if still held.
RENEW_LEASES = """
local held = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

# Let go of lease KEYS[1] if token ARGV[1] holds it.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
