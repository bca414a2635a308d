-- Compare-and-set a shared document and tell every node.
-- Documented at CAS_SCRIPT in server/src/store.rs (KEYS, ARGV).
local cur = redis.call('GET', KEYS[1])
local v = 0
if cur then v = tonumber(string.match(cur, '^{"v":(%d+)')) end
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call(ARGV[5], ARGV[3], ARGV[4] .. ARGV[2])
return 1
