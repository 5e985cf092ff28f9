"""The Lua scripts of the Redis online store: each check-and-write runs as one atomic step.

Redis runs a script to its end before any other command, so the checks (the write lease,
the expected watermark, the tables' key spaces) and the writes they guard cannot be split
by another client, and a script's writes land all together or, if it fails before writing,
not at all. Every key a script touches is passed in ``KEYS`` and shares the store's hash
tag (see ``redis_keys``), as Redis Cluster requires.

A script answers with a list whose first item says what happened:

- ``ok``: done;
- ``done``: this write id was already applied (a retry after a lost reply);
- ``busy``: another writer holds the write lease (an open staged write): wait and retry;
- ``moved``, seq, ingested_at: the watermark is not the expected one; nothing was written;
- ``stale``: a table's key space is not the one the client named (the table was replaced
  or dropped meanwhile): look it up again and retry;
- ``lost``: a table replacement's new key space was taken for abandoned and deleted.
"""

from __future__ import annotations

# Preamble shared by the writing scripts. KEYS[1] marks, KEYS[2] tables, KEYS[3] lease;
# ARGV[1] write id, ARGV[2] lease token ('' for none), ARGV[3], ARGV[4] the expected
# watermark ('' for no check).
_GUARDS = """
local marks, tables, lease = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', marks, 'x') == ARGV[1] then return {'done'} end
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[2] then return {'busy'} end
if ARGV[3] ~= '' then
  local now = redis.call('HMGET', marks, 's', 'a')
  local seq, at = now[1] or '0', now[2] or '0'
  if seq ~= ARGV[3] or at ~= ARGV[4] then return {'moved', seq, at} end
end
"""

# Blobs of several tables, the watermark and the identity mark in one step.
# ARGV[5], ARGV[6]: the new watermark ('' keeps it); ARGV[7]: the new identity mark ('' keeps
# it); ARGV[8]: the number of tables, then per table its name, key space, key TTL in ms (0:
# none) and number of keys; then one value per entity key (KEYS[4] on), '' deleting the key.
WRITE = (
    _GUARDS
    + """
local count = tonumber(ARGV[8])
for t = 0, count - 1 do
  if redis.call('HGET', tables, ARGV[9 + 4 * t]) ~= ARGV[10 + 4 * t] then return {'stale'} end
end
local key, value = 4, 9 + 4 * count
for t = 0, count - 1 do
  local ttl, rows = tonumber(ARGV[11 + 4 * t]), tonumber(ARGV[12 + 4 * t])
  for _ = 1, rows do
    local blob = ARGV[value]
    if blob == '' then
      redis.call('DEL', KEYS[key])
    elseif ttl > 0 then
      redis.call('SET', KEYS[key], blob, 'PX', ttl)
    else
      redis.call('SET', KEYS[key], blob)
    end
    key, value = key + 1, value + 1
  end
end
if ARGV[5] ~= '' then redis.call('HSET', marks, 's', ARGV[5], 'a', ARGV[6]) end
if ARGV[7] ~= '' then redis.call('HSET', marks, 'i', ARGV[7]) end
redis.call('HSET', marks, 'x', ARGV[1])
if holder then redis.call('DEL', lease) end
return {'ok'}
"""
)

# Point table ARGV[5] at the filled key space ARGV[6]; the old space is to be deleted.
# KEYS[4] garbage, KEYS[5] filling. ``lost`` if the space is no longer being filled (a
# collector took the replacement for abandoned, see ABANDON_FILL).
SWITCH_TABLE = (
    _GUARDS
    + """
if redis.call('HEXISTS', KEYS[5], ARGV[6]) == 0 then return {'lost'} end
local old = redis.call('HGET', tables, ARGV[5])
redis.call('HSET', tables, ARGV[5], ARGV[6])
redis.call('HDEL', KEYS[5], ARGV[6])
if old then redis.call('SADD', KEYS[4], old) end
redis.call('HSET', marks, 'x', ARGV[1])
return {'ok'}
"""
)

# Forget table ARGV[5]; its key space is to be deleted. KEYS[4] garbage.
DROP_TABLE = (
    _GUARDS
    + """
local old = redis.call('HGET', tables, ARGV[5])
redis.call('HDEL', tables, ARGV[5])
if old then redis.call('SADD', KEYS[4], old) end
redis.call('HSET', marks, 'x', ARGV[1])
return {'ok'}
"""
)

# The key spaces of tables ARGV[...], created where missing. KEYS[1] tables, KEYS[2] counter.
ENSURE_TABLES = """
local spaces = {}
for i, name in ipairs(ARGV) do
  local space = redis.call('HGET', KEYS[1], name)
  if not space then
    space = tostring(redis.call('INCR', KEYS[2]))
    redis.call('HSET', KEYS[1], name, space)
  end
  spaces[i] = space
end
return spaces
"""

# A new key space for a table replacement, noted as being filled since ARGV[1] (unix s).
# KEYS[1] counter, KEYS[2] filling.
RESERVE_SPACE = """
local space = tostring(redis.call('INCR', KEYS[1]))
redis.call('HSET', KEYS[2], space, ARGV[1])
return space
"""

# Give up key space ARGV[1] if it is still being filled since ARGV[2]: it goes to the spaces to
# delete (KEYS[1] filling, KEYS[2] garbage). 1 if it did, 0 if the space was switched to.
ABANDON_FILL = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# Entity states of a key space no table points at yet: KEYS the keys, ARGV[1] the TTL in ms
# (0: none), ARGV[2...] the blobs.
FILL = """
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  if ttl > 0 then
    redis.call('SET', key, ARGV[i + 1], 'PX', ttl)
  else
    redis.call('SET', key, ARGV[i + 1])
  end
end
return #KEYS
"""

# Take the write lease for token ARGV[1] for ARGV[2] ms, unless another holds it; answers
# with the watermark. KEYS[1] lease, KEYS[2] marks.
TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {'busy'} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local now = redis.call('HMGET', KEYS[2], 's', 'a')
return {'ok', now[1] or '0', now[2] or '0'}
"""

# Extend the lease of token ARGV[1] to ARGV[2] ms from now (0 if it is not held by it).
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# Let go of the lease of token ARGV[1] (nothing if another holds it).
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""
