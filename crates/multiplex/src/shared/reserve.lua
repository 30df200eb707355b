-- infermux: one pool decision on one key, atomically, on the one clock of every process
-- (Redis TIME). Times are microseconds since the Unix epoch: whole ones are exact in Lua's
-- doubles, fractions near now (about 1.8e15) to a quarter of a microsecond.
--
-- KEYS[1] the RPM limiter's theoretical arrival time (TAT)
-- KEYS[2] the TPM limiter's TAT
-- KEYS[3] the key's cooldown: cooling until
-- KEYS[4] the key's removal: "<reason> <until>" (until -1: for good)
-- ARGV[1] RPM capacity, ARGV[2] RPM refill a minute (0: no RPM limit)
-- ARGV[3] TPM capacity, ARGV[4] TPM refill a minute (0: no TPM limit)
-- ARGV[5] tokens to reserve
--
-- Returns {0} reserved, {1, wait} cooling, {2, reason, wait} removed (wait -1: for good),
-- {3, wait, 1} limited by requests, {3, wait, 2} by tokens; wait in microseconds from now
-- (rounded up: never early).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local removal = redis.call('GET', KEYS[4])
if removal then
  local reason, untl = string.match(removal, '^(%d+) (%-?%d+)$')
  if reason then
    untl = tonumber(untl)
    if untl < 0 then
      return {2, tonumber(reason), -1}
    elseif untl > now then
      return {2, tonumber(reason), untl - now}
    end
  end
end

local cool = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if cool > now then
  return {1, cool - now}
end

-- the GCRA of gcra.rs: a take of `units` costs their time, the tolerance is `burst` units'
-- time (so the burst-th take of an empty key fits, as it does locally). A unit's time is kept
-- in fractions of a microsecond: rounded up to whole ones, more than 60 million a minute
-- would refill at 60 million (a limit of 150 million at 40 % of it). A TAT near now keeps a
-- quarter of a microsecond, so a take is charged to within that.
local function take(key, burst, per_min, units)
  local unit = 60000000 / per_min
  local cost = units * unit
  local tolerance = burst * unit
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  local nxt = math.max(tat, now) + cost
  -- (a microsecond's slack: the sums' rounding must not refuse the burst-th take)
  if nxt - now > tolerance + 1 then
    return nil, math.ceil((nxt - now) - tolerance)
  end
  return nxt, 0
end

local rpm_burst, rpm_per_min = tonumber(ARGV[1]), tonumber(ARGV[2])
local tpm_burst, tpm_per_min = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = tonumber(ARGV[5])

local rpm_next, tpm_next
if rpm_per_min > 0 then
  local wait
  rpm_next, wait = take(KEYS[1], rpm_burst, rpm_per_min, 1)
  if not rpm_next then
    return {3, wait, 1}
  end
end
if tpm_per_min > 0 and tokens > 0 then
  local wait
  tpm_next, wait = take(KEYS[2], tpm_burst, tpm_per_min, tokens)
  if not tpm_next then
    return {3, wait, 2}
  end
end

-- a TAT is kept as long as it is ahead of now (then it means an empty key), with its fraction
local function store(key, tat)
  local ttl_ms = math.ceil((tat - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.17g', tat), 'PX', string.format('%.0f', ttl_ms))
end
if rpm_next then
  store(KEYS[1], rpm_next)
end
if tpm_next then
  store(KEYS[2], tpm_next)
end
return {0}
