-- Give a message its seq, store it, publish it: one atomic step.
-- Documented at APPEND in server/src/broker/redis.rs (KEYS, ARGV, why).
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
local seq
local sseq = 0
local body = ARGV[3]
if ARGV[2] == '1' then
  seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
  sseq = redis.call('HINCRBY', KEYS[1], 'staff_seq', 1)
  body = string.gsub(body, '"staff_seq":0', '"staff_seq":' .. sseq, 1)
else
  seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
end
local now = tonumber(ARGV[6])
local maxlen = tonumber(ARGV[7])
local retention = tonumber(ARGV[8])
if maxlen > 0 and retention > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, seq .. '-*', 'm', body, 'a', ARGV[4], 'i', ARGV[5], 't', ARGV[6])
  for _ = 1, 16 do
    local e = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    if not e then break end
    local f = e[2]
    local t = nil
    for i = 1, #f, 2 do if f[i] == 't' then t = tonumber(f[i + 1]) end end
    if t and t < now - retention then redis.call('XDEL', KEYS[2], e[1]) else break end
  end
  redis.call('PEXPIRE', KEYS[2], retention)
end
redis.call(ARGV[10], ARGV[9], 'M' .. epoch .. '\n' .. seq .. '\n' .. ARGV[6] .. '\n' .. ARGV[4] .. '\n' .. body)
return {epoch, seq, sseq}
