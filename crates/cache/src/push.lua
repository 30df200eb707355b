-- Appends a record to a semantic namespace, in one step: readers never see a later record
-- before an earlier one.
-- KEYS[1]: the prefix's generation counter; KEYS[2]: the namespace (a sorted set);
-- KEYS[3]: the namespace's generation.
-- ARGV[1]: the record; ARGV[2]: the stop rank that trims it to its newest records (negative);
-- ARGV[3]: its time to live in milliseconds. Returns the record's sequence number.
--
-- A record is `<seq, 20 digits>:<stored, ms since the epoch>:<record>`; records older than
-- the time to live are dropped from the oldest on, so a namespace written to all the time
-- does not keep its old records for ever (the key's own expiry is renewed by every write).
--
-- Records are numbered within their namespace (its newest number + 1). A namespace made anew
-- (after a flush, a restart without persistence, an expiry or an eviction) gets a generation
-- no earlier one had (the server's time and a counter), so a reader that has read an older
-- generation reads it again from the start.
local gen = redis.call('GET', KEYS[3])
if not gen or redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  gen = t[1] .. '.' .. t[2] .. '.' .. redis.call('INCR', KEYS[1])
  redis.call('SET', KEYS[3], gen)
end
local seq = 1
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if top[2] then
  seq = tonumber(top[2]) + 1
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[2], seq, string.format('%020d:%d:', seq, now_ms) .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, ARGV[2])
-- the records are in the order they were written, so their times rise with their rank: the
-- first fresh one is found by bisection (a few reads, whatever the number of expired ones),
-- and those before it go in one step
local cutoff = now_ms - tonumber(ARGV[3])
local function stored(rank)
  local m = redis.call('ZRANGE', KEYS[2], rank, rank)[1]
  -- a record of the older form (no time) goes as an expired one would: its age is unknown
  return tonumber(string.match(m or '', '^%d+:(%d+):') or '') or 0
end
local lo, hi = 0, redis.call('ZCARD', KEYS[2]) - 1
-- the record just written is fresh: the answer is at most `hi`
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if stored(mid) < cutoff then
    lo = mid + 1
  else
    hi = mid
  end
end
if lo > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, lo - 1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return seq
