-- Appends a record to a semantic namespace, in one step: readers never see a later record
-- before an earlier one.
-- KEYS[1]: the prefix's sequence counter; KEYS[2]: the namespace (a sorted set).
-- ARGV[1]: the record; ARGV[2]: the stop rank that trims it to its newest records (negative);
-- ARGV[3]: its time to live in milliseconds. Returns the record's sequence number.
local seq = redis.call('INCR', KEYS[1])
-- The counter can be lost while the namespace stays (an eviction of that one key): numbers
-- never go backwards within a namespace, or readers that caught up past them would skip the
-- new records.
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= seq then
  seq = tonumber(top[2]) + 1
  redis.call('SET', KEYS[1], seq)
end
redis.call('ZADD', KEYS[2], seq, string.format('%020d:', seq) .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return seq
