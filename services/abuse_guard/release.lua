-- Forget an allowed send whose event could not be made durable, so that the
-- client's resend is neither refused as a duplicate nor counted twice.
-- The idempotency marker stays on purpose: a retry with the same
-- client_msg_id then looks for the message (it may have been stored after
-- all) before publishing it again under the same id.
--
-- KEYS[1]  the user's accepted sends    KEYS[2]  duplicate marker
-- ARGV[1]  message id
--
-- Returns the number of records removed.

local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  removed = removed + redis.call('DEL', KEYS[2])
end
return removed
