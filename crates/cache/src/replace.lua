-- infermux: stores an exact answer in place of one this process read as past its TTL.
--
-- KEYS[1] the answer's key
-- ARGV[1] the answer, ARGV[2] its TTL (ms), ARGV[3] the value read as expired,
-- ARGV[4] 1: otherwise only when the key is absent (SET NX), 0: otherwise in any case
--
-- The value read is replaced only if it is still there unchanged: another process's newer
-- answer is never overwritten by an answer of this one, and a value this process takes for
-- expired (its clock ahead of the writer's, or its TTL shorter) gives way to its own answer
-- rather than being deleted (which deleted the others' fresh answers) or kept in its way
-- (which kept this process missing until Redis expired it).
if redis.call('GET', KEYS[1]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif ARGV[4] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
