//! The Lua scripts: each room operation that checks and changes state runs as one script,
//! so the check and the change (and the event that announces it) are atomic. Every script
//! touches the keys of one room only (one hash slot), as Redis Cluster requires.

use redis::Script;

/// Join (and create, and re-register after a Redis restart).
///
/// KEYS: meta, members, seq. ARGV: peer, record (JSON), mode, server capacity, uid,
/// instance, channel, room (JSON string), now ms, then the creation fields: name, host,
/// host name, attributes (JSON), capacity, empty grace ms, inactivity ms, secured (`1`/`0`);
/// then whether the joiner holds a token (`1`/`0`) and whether token holders may join
/// secured rooms only (`1`/`0`).
///
/// A secured room admits token holders only (`token_required`); with the last flag set, a
/// token holder may not join a room that is not secured (`not_secured`).
///
/// Modes: `e` join an existing room; `c` create (fail if it exists); `q` join, or answer
/// `would_create`; `j` join or create; `r` re-register (create if missing, no capacity
/// check). The same membership id joining again is idempotent (no event).
///
/// Every check runs before the first write, so a refused join leaves nothing behind (a room
/// it would have created included).
///
/// Returns `{"ok", created, seq, meta…, "|", members…}` or `{"err", code, n}`.
pub const JOIN: &str = r#"
local meta, members, seqk = KEYS[1], KEYS[2], KEYS[3]
local peer, record, mode = ARGV[1], ARGV[2], ARGV[3]
local server_cap, uid, inst, ch, room_json, now = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
-- Every check first, then every write: a refused join changes nothing.
local exists = redis.call('EXISTS', meta) == 1 or redis.call('HLEN', members) > 0
if not exists then
  if mode == 'e' then return {'err', 'not_found', 0} end
  if mode == 'q' then return {'err', 'would_create', 0} end
elseif mode == 'c' then
  return {'err', 'exists', 0}
end
if mode ~= 'r' then
  local sec
  if exists then sec = redis.call('HGET', meta, 'sec') == '1' else sec = ARGV[17] == '1' end
  if sec and ARGV[18] ~= '1' then return {'err', 'token_required', 0} end
  if (not sec) and ARGV[18] == '1' and ARGV[19] == '1' then return {'err', 'not_secured', 0} end
end
local cur = redis.call('HGET', members, peer)
if cur and cjson.decode(cur)['u'] ~= uid then return {'err', 'taken', 0} end
if (not cur) and mode ~= 'r' then
  local cap
  if exists then cap = tonumber(redis.call('HGET', meta, 'cap') or '0') or 0 else cap = tonumber(ARGV[14]) or 0 end
  local eff = cap
  if server_cap > 0 and (eff == 0 or server_cap < eff) then eff = server_cap end
  if eff > 0 and redis.call('HLEN', members) >= eff then return {'err', 'full', eff} end
end
local created = 0
if not exists then
  redis.call('HSET', meta, 'name', ARGV[10], 'host', ARGV[11], 'host_name', ARGV[12],
    'attrs', ARGV[13], 'cap', ARGV[14], 'grace', ARGV[15], 'idle', ARGV[16],
    'sec', ARGV[17], 'created', now, 'act', now)
  created = 1
end
redis.call('PERSIST', meta)
local seq = tonumber(redis.call('GET', seqk) or '0')
if not cur then
  if redis.call('HGET', meta, 'host') == peer then
    record = string.gsub(record, '"h":false', '"h":true', 1)
  end
  redis.call('HSET', members, peer, record)
  seq = redis.call('INCR', seqk)
  redis.call('EXPIRE', seqk, 86400)
  redis.call('HSET', meta, 'act', now)
  if redis.call('HLEN', members) == 2 then redis.call('HSETNX', meta, 'paired', now) end
  redis.call('PUBLISH', ch, '{"t":"j","o":' .. cjson.encode(inst) .. ',"r":' .. room_json ..
    ',"q":' .. seq .. ',"p":' .. cjson.encode(peer) .. ',"m":' .. record .. '}')
end
local out = {'ok', created, seq}
for _, v in ipairs(redis.call('HGETALL', meta)) do out[#out + 1] = v end
out[#out + 1] = '|'
for _, v in ipairs(redis.call('HGETALL', members)) do out[#out + 1] = v end
return out
"#;

/// Leave: removes the member if the membership id still matches, announces it, and starts
/// an emptied room's grace (deleting its mailboxes).
///
/// KEYS: meta, members, seq, mbseq. ARGV: peer, uid, publishing instance, channel, room
/// (JSON string), default empty grace ms, now ms. Returns 1 when removed, 0 otherwise.
pub const LEAVE: &str = r#"
local meta, members, seqk, mbseq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local peer, uid, inst, ch, room_json = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cur = redis.call('HGET', members, peer)
if not cur or cjson.decode(cur)['u'] ~= uid then return 0 end
redis.call('HDEL', members, peer)
local seq = redis.call('INCR', seqk)
redis.call('EXPIRE', seqk, 86400)
redis.call('PUBLISH', ch, '{"t":"l","o":' .. cjson.encode(inst) .. ',"r":' .. room_json ..
  ',"q":' .. seq .. ',"p":' .. cjson.encode(peer) .. ',"u":' .. cjson.encode(uid) .. '}')
if redis.call('HLEN', members) == 0 then
  local prefix = string.sub(mbseq, 1, -6)
  for _, to in ipairs(redis.call('HKEYS', mbseq)) do redis.call('DEL', prefix .. 'mb:' .. to) end
  redis.call('DEL', mbseq, prefix .. 'mbbytes')
  local grace = tonumber(redis.call('HGET', meta, 'grace') or '')
  if grace == nil or grace < 0 then grace = tonumber(ARGV[6]) end
  if grace <= 0 then
    redis.call('DEL', meta)
  else
    redis.call('HSET', meta, 'act', ARGV[7])
    redis.call('PEXPIRE', meta, grace)
  end
else
  redis.call('HSET', meta, 'act', ARGV[7])
end
return 1
"#;

/// Create an empty room (`POST /api/rooms`); it expires unless joined.
///
/// KEYS: meta, members. ARGV: name, host, host name, attributes, capacity, grace,
/// inactivity, secured, now ms, unjoined ttl ms. Returns 1, or 0 when it exists.
pub const CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HLEN', KEYS[2]) > 0 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'host', ARGV[2], 'host_name', ARGV[3],
  'attrs', ARGV[4], 'cap', ARGV[5], 'grace', ARGV[6], 'idle', ARGV[7], 'sec', ARGV[8],
  'created', ARGV[9], 'act', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[10])
return 1
"#;

/// Delete a room and tell its nodes. KEYS: meta, members, mbseq. ARGV: channel, room
/// (JSON string). Returns 1 when it existed.
pub const DELETE: &str = r#"
local existed = redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HLEN', KEYS[2]) > 0
if not existed then return 0 end
local prefix = string.sub(KEYS[3], 1, -6)
for _, to in ipairs(redis.call('HKEYS', KEYS[3])) do redis.call('DEL', prefix .. 'mb:' .. to) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], prefix .. 'mbbytes')
redis.call('PUBLISH', ARGV[1], '{"t":"c","r":' .. ARGV[2] .. '}')
return 1
"#;

/// Mailbox push, bounded as on one node: per recipient in items, per room in bytes (the
/// oldest item of any recipient goes first). The room's byte count is kept in
/// `<prefix>mbbytes` and counts payload bytes only, as the in-memory mailbox does.
///
/// KEYS: mbseq, the recipient's list, the byte count. ARGV: recipient, payload, most items,
/// most bytes, the room's key prefix (`sb:{room}:`). Returns the item's sequence number.
pub const MAILBOX_PUSH: &str = r#"
local mbseq, list, bytesk = KEYS[1], KEYS[2], KEYS[3]
local to, payload, most_items, most_bytes, prefix =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local function size(item) return #item - string.find(item, '\n', 1, true) end
local seq = redis.call('HINCRBY', mbseq, to, 1) - 1
redis.call('RPUSH', list, seq .. '\n' .. payload)
local bytes = redis.call('INCRBY', bytesk, #payload)
while redis.call('LLEN', list) > most_items do
  bytes = redis.call('DECRBY', bytesk, size(redis.call('LPOP', list)))
end
while bytes > most_bytes do
  local oldest, oldest_seq = nil, nil
  for _, who in ipairs(redis.call('HKEYS', mbseq)) do
    local head = redis.call('LINDEX', prefix .. 'mb:' .. who, 0)
    if head then
      local s = tonumber(string.match(head, '^(%d+)'))
      if oldest_seq == nil or s < oldest_seq then oldest, oldest_seq = who, s end
    end
  end
  if oldest == nil then break end
  bytes = redis.call('DECRBY', bytesk, size(redis.call('LPOP', prefix .. 'mb:' .. oldest)))
end
return seq
"#;

/// Mailbox replay. KEYS: the recipient's list, the room's byte count. ARGV: the first
/// sequence number wanted. Drops the items below it; returns the rest.
pub const MAILBOX_REPLAY: &str = r#"
local from = tonumber(ARGV[1])
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local seq = tonumber(string.match(head, '^(%d+)'))
  if seq >= from then break end
  redis.call('LPOP', KEYS[1])
  redis.call('DECRBY', KEYS[2], #head - string.find(head, '\n', 1, true))
end
return redis.call('LRANGE', KEYS[1], 0, -1)
"#;

/// First flow. KEYS: meta. ARGV: now ms. Returns `{1, paired ms or -1}` the first time,
/// `{0}` after, `{-1}` for a room that is gone.
pub const FIRST_FLOW: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
if redis.call('HSETNX', KEYS[1], 'flowed', ARGV[1]) == 0 then return {0} end
return {1, tonumber(redis.call('HGET', KEYS[1], 'paired') or '-1')}
"#;

/// Issue a rendezvous code: the first free one from a start. KEYS: none (codes share the
/// `{codes}` slot; the key prefix is ARGV[1]). ARGV: prefix, start, value, ttl ms.
/// Returns the code, or -1 when all are live.
pub const ISSUE_CODE: &str = r#"
local start = tonumber(ARGV[2])
for i = 0, 9999 do
  local n = (start + i) % 10000
  if redis.call('SET', ARGV[1] .. string.format('%04d', n), ARGV[3], 'NX', 'PX', ARGV[4]) then
    return n
  end
end
return -1
"#;

/// The scripts, hashed once.
#[derive(Debug)]
pub struct Scripts {
    pub join: Script,
    pub leave: Script,
    pub create: Script,
    pub delete: Script,
    pub mailbox_push: Script,
    pub mailbox_replay: Script,
    pub first_flow: Script,
    pub issue_code: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            create: Script::new(CREATE),
            delete: Script::new(DELETE),
            mailbox_push: Script::new(MAILBOX_PUSH),
            mailbox_replay: Script::new(MAILBOX_REPLAY),
            first_flow: Script::new(FIRST_FLOW),
            issue_code: Script::new(ISSUE_CODE),
        }
    }
}
