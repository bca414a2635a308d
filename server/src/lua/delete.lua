-- Delete history entries whose field equals a value.
-- Documented at DELETE in server/src/broker/redis.rs (KEYS, ARGV).
for _, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == ARGV[3] and f[i + 1] == ARGV[4] then redis.call('XDEL', KEYS[1], e[1]) end
  end
end
return 0
