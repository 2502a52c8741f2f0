-- One turn of the shared request budget (src/budget.rs), evaluated atomically in Redis.
--
-- Two GCRA limits with burst 1 (all requests; submits alone), on Redis's own clock (TIME, so
-- hosts with skewed clocks agree), checked together: a request that may not go spends
-- neither. Beside them: the account pause (a 401/402 seen by one daemon holds all of them,
-- and when it ends exactly one request is let through as the probe), fairness between
-- daemons waiting for a submit (the one served least recently goes first), polls that leave
-- a submit's slot to it when documents are the scarcer budget, and who used the budget lately.
--
-- The key keeps the limits it was created with (both periods, and the rates as the daemon's
-- `[api]` wrote them, for messages). A daemon that asks with stricter ones tightens them
-- (each limit on its own); nothing loosens them but the key's deletion or expiry. Every turn
-- is measured with the stricter of the key's and the asking daemon's, so daemons configured
-- with different limits together keep the stricter ones, whoever asks.
--
-- KEYS: 1 state (hash), 2 wants (zset: daemon -> until when its claim to a submit holds),
--       3 served (hash: daemon -> when its last submit was granted), 4 seen (zset: daemon ->
--       when it last asked). Times are microseconds of Redis's clock.
-- ARGV: 1 op (submit | poll | sync), 2 this daemon's name, 3 request period, 4 submit period,
--       5 grace (how long a refused daemon's claim outlives its wait), 6 the wait of a daemon
--       that lets another go first, 7 account news (none | pause | clear_submit | clear_poll),
--       8 its HTTP status, 9 its message, 10 the pause's length, 11 the keys' time to live (s),
--       12 the window of "used lately" (us), 13 whether this daemon has a submit waiting (1/0),
--       14 requests per second and 15 documents per minute as configured (the rates of the
--       periods 3 and 4), 16 whether stricter limits are stored with the key (1: a daemon; 0:
--       `check`, whose config may be a draft).
-- Returns: granted (0/1), this op's wait, the request budget's wait, the submit budget's
--       wait, pause status (0: none), pause message, pause since (unix ms), pause left, probe
--       (0/1: this grant is the one try after a pause), daemons seen lately, the key's
--       requests per second and documents per minute before this turn ('' when it had none),
--       the requests per second and documents per minute this turn was measured with.

local state, wants, served, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, me = ARGV[1], ARGV[2]
local own_req_p, own_sub_p = tonumber(ARGV[3]), tonumber(ARGV[4])
local grace, yield_wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local news = ARGV[7]
local ttl, window = tonumber(ARGV[11]), tonumber(ARGV[12])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or '?'

local s = redis.call('HMGET', state, 'run_id', 'req_tat', 'sub_tat', 'pause_until',
    'pause_status', 'pause_message', 'pause_since', 'pause_retry', 'limit_req_p', 'limit_sub_p',
    'limit_rps', 'limit_dpm')

-- The key's limits, each tightened to the asking daemon's when those are stricter (a longer
-- period); this turn and the plans below use them.
local found_rps, found_dpm = s[11] or '', s[12] or ''
local req_p, rps = tonumber(s[9]), found_rps
local sub_p, dpm = tonumber(s[10]), found_dpm
if not req_p or own_req_p > req_p then
    req_p, rps = own_req_p, ARGV[14]
end
if not sub_p or own_sub_p > sub_p then
    sub_p, dpm = own_sub_p, ARGV[15]
end
if ARGV[16] == '1' and (req_p ~= tonumber(s[9]) or sub_p ~= tonumber(s[10])) then
    redis.call('HSET', state, 'limit_req_p', req_p, 'limit_sub_p', sub_p, 'limit_rps', rps,
        'limit_dpm', dpm)
end

local req_tat = tonumber(s[2]) or 0
local sub_tat = tonumber(s[3]) or 0
if s[1] ~= run_id then
    -- First use, or this Redis restarted (its state lost, or restored from an older
    -- snapshot): a request may have gone out just before, so each kind waits a full period.
    req_tat = now + req_p
    sub_tat = now + sub_p
    redis.call('HSET', state, 'run_id', run_id, 'req_tat', req_tat, 'sub_tat', sub_tat)
end
-- Burst 1: a budget is never more than one period ahead of now (a clock stepped back on the
-- Redis host costs at most one period).
req_tat = math.min(req_tat, now + req_p)
sub_tat = math.min(sub_tat, now + sub_p)

local pause_until = tonumber(s[4])
local pause_status = tonumber(s[5]) or 0
local pause_message = s[6] or ''
local pause_since = tonumber(s[7]) or 0
local pause_retry = tonumber(s[8]) or 0
if news == 'pause' then
    if not pause_until then
        pause_since = math.floor(now / 1000)
    end
    pause_status, pause_message = tonumber(ARGV[8]), ARGV[9]
    pause_retry = tonumber(ARGV[10])
    pause_until = now + pause_retry
    redis.call('HSET', state, 'pause_until', pause_until, 'pause_status', pause_status,
        'pause_message', pause_message, 'pause_since', pause_since, 'pause_retry', pause_retry)
elseif pause_until and (news == 'clear_submit' or (news == 'clear_poll' and pause_status == 401)) then
    redis.call('HDEL', state, 'pause_until', 'pause_status', 'pause_message', 'pause_since',
        'pause_retry')
    pause_until = nil
end

-- A 402 holds submits; a 401 holds polls too.
local function held(kind)
    return pause_until ~= nil and (kind == 'submit' or pause_status == 401)
end

local granted, probe, wait = 0, 0, 0
if op == 'submit' or op == 'poll' then
    wait = req_tat - now
    if op == 'submit' then
        wait = math.max(wait, sub_tat - now)
    end
    if held(op) then
        wait = math.max(wait, pause_until - now)
    end
    if wait <= 0 and op == 'submit' then
        -- Another daemon waiting for a submit that was served less recently goes first.
        local mine = tonumber(redis.call('HGET', served, me)) or 0
        for _, other in ipairs(redis.call('ZRANGEBYSCORE', wants, now, '+inf')) do
            if other ~= me and (tonumber(redis.call('HGET', served, other)) or 0) < mine then
                wait = yield_wait
                break
            end
        end
    end
    if wait <= 0 and op == 'poll' and sub_p >= 2 * req_p and not held('submit')
        and sub_tat < now + req_p and redis.call('ZCOUNT', wants, now, '+inf') > 0 then
        -- Documents are the scarcer budget and a submit is due before the next request slot:
        -- this poll would push it back, and that time is lost for good.
        wait = math.max(sub_tat - now, 0) + req_p
    end
    if wait <= 0 then
        granted = 1
        wait = 0
        req_tat = math.max(req_tat, now) + req_p
        redis.call('HSET', state, 'req_tat', req_tat)
        if op == 'submit' then
            sub_tat = math.max(sub_tat, now) + sub_p
            redis.call('HSET', state, 'sub_tat', sub_tat)
            redis.call('HSET', served, me, now)
            redis.call('ZREM', wants, me)
        end
        if held(op) then
            -- The pause is over and this request is the one try: the others wait for its
            -- answer (or, if this daemon dies meanwhile, for one more pause).
            probe = 1
            pause_until = now + pause_retry
            redis.call('HSET', state, 'pause_until', pause_until)
        end
    elseif op == 'submit' then
        redis.call('ZADD', wants, now + wait + grace, me)
    end
    if ARGV[13] == '1' and op ~= 'submit' then
        -- A submit waits here too: its claim holds until the submit budget allows it.
        redis.call('ZADD', wants, math.max(sub_tat, req_tat, now) + grace, me)
    end
elseif ARGV[13] == '1' then
    redis.call('ZADD', wants, math.max(sub_tat, req_tat, now) + grace, me)
end

redis.call('ZADD', seen, now, me)
redis.call('ZREMRANGEBYSCORE', seen, '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', wants, '-inf', now)
for _, key in ipairs(KEYS) do
    redis.call('EXPIRE', key, ttl)
end

local pause_left = 0
if pause_until then
    pause_left = math.max(pause_until - now, 0)
else
    pause_status, pause_message, pause_since = 0, '', 0
end
return { granted, wait, math.max(req_tat - now, 0), math.max(sub_tat - now, 0), pause_status,
    pause_message, pause_since, pause_left, probe, redis.call('ZCARD', seen), found_rps,
    found_dpm, rps, dpm }
