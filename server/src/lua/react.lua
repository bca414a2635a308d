-- Give or take back one member's reaction to a message, count, publish.
-- Documented at REACT in server/src/broker/redis/mod.rs (KEYS, ARGV, why).
local changed = 0
if ARGV[3] == '1' then
  if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 1 then
    redis.call('HINCRBY', KEYS[1], '#' .. ARGV[2], 1)
    changed = 1
  end
elseif redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], '#' .. ARGV[2], -1)
  changed = 1
end
if changed == 0 then return 0 end
local parts = {}
for i = 12, #ARGV do
  local n = tonumber(redis.call('HGET', KEYS[1], '#' .. ARGV[i]) or '0')
  if n > 0 then parts[#parts + 1] = '"' .. ARGV[i] .. '":' .. n end
end
local counts = '{' .. table.concat(parts, ',') .. '}'
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
if #parts > 0 then
  redis.call('HSET', KEYS[2], ARGV[9], counts)
else
  redis.call('HDEL', KEYS[2], ARGV[9])
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if redis.call('HLEN', KEYS[2]) > tonumber(ARGV[10]) then
  -- Counts of messages whose reactions have expired (they left the history).
  for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[11] .. id) == 0 then redis.call('HDEL', KEYS[2], id) end
  end
end
redis.call(ARGV[7], ARGV[6], ARGV[8] .. counts .. '}')
return 1
