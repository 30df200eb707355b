-- infermux: reconciles a TPM reservation with real usage on the shared limiter, as gcra.rs's
-- give_back (ARGV[3] = -1) and charge (ARGV[3] = 1) do.
--
-- KEYS[1] the TPM limiter's TAT (microseconds since the Unix epoch)
-- ARGV[1] the TPM refill a minute, ARGV[2] tokens, ARGV[3] -1 give back, 1 charge
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- (the units' time exact, as reserve.lua charges it)
local cost = tonumber(ARGV[2]) * 60000000 / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[3]) < 0 then
  tat = tat - cost
else
  tat = math.max(tat, now) + cost
end
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  local ttl_ms = math.ceil((tat - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', string.format('%.0f', ttl_ms))
end
return 0
