-- The records of a semantic namespace after sequence number ARGV[1].
-- KEYS[1]: the namespace. Returns {reset, records}: reset is 1 when the namespace's newest
-- record is older than ARGV[1] (the namespace and its counter were lost, a flush or a
-- restart, and numbering began again), and the records are then all of them.
local after = ARGV[1]
local reset = 0
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) < tonumber(after) then
  after = '0'
  reset = 1
end
return {reset, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. after, '+inf')}
