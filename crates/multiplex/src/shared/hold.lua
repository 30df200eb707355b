-- infermux: records a key's cooldown (ARGV[1] = 'cool') or removal (ARGV[1] = 'remove'),
-- extending what is recorded, never shortening it.
--
-- KEYS[1] the cooldown key (cool) or the removal key (remove)
-- ARGV[2] for how long, microseconds (-1: for good; removals only)
-- ARGV[3] the removal's reason (1 auth, 2 quota)
-- ARGV[4] how long Redis keeps a removal for good, milliseconds
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local span = tonumber(ARGV[2])
if ARGV[1] == 'cool' then
  local untl = now + span
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if untl > cur then
    local ttl_ms = math.ceil(span / 1000) + 1
    redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', string.format('%.0f', ttl_ms))
  end
  return 0
end
local cur = redis.call('GET', KEYS[1])
if cur then
  local _, cur_until = string.match(cur, '^(%d+) (%-?%d+)$')
  cur_until = tonumber(cur_until)
  if cur_until and (cur_until < 0 or (span >= 0 and cur_until >= now + span)) then
    return 0
  end
end
if span < 0 then
  redis.call('SET', KEYS[1], ARGV[3] .. ' -1', 'PX', ARGV[4])
else
  local untl = now + span
  local ttl_ms = math.ceil(span / 1000) + 1
  redis.call('SET', KEYS[1], ARGV[3] .. ' ' .. string.format('%.0f', untl), 'PX',
    string.format('%.0f', ttl_ms))
end
return 0
