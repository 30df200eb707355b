-- The records of a semantic namespace after sequence number ARGV[1] of generation ARGV[2], at
-- most ARGV[3] of them (the oldest first: a reader far behind catches up over several calls,
-- never in one reply that blocks the server).
-- KEYS[1]: the namespace; KEYS[2]: its generation. Returns {generation, records}: when the
-- namespace's generation is not ARGV[2] (it was made anew, or the reader has read none yet),
-- the records are from its start.
local gen = redis.call('GET', KEYS[2]) or ''
local after = ARGV[1]
if gen ~= ARGV[2] then
  after = '0'
end
return {gen, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. after, '+inf', 'LIMIT', 0, ARGV[3])}
