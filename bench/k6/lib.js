// Shared helpers of the k6 scripts: tickets, the few protobuf messages the gateway speaks (spec §3).
import http from 'k6/http';

export const BASE = __ENV.BASE_URL || 'http://127.0.0.1:3000';
export const WS_BASE = BASE.replace(/^http/, 'ws');
export const USERS = JSON.parse(open(__ENV.USERS || './users.json'));

export function ticket(token) {
  const res = http.post(`${BASE}/v1/gateway/ticket`, null, { headers: { Authorization: `Bearer ${token}` },
                                                            tags: { name: 'ticket' } });
  return res.status === 201 ? res.json('ticket') : null;
}

function uuidBytes(s) {
  const hex = s.replace(/-/g, '');
  const out = [];
  for (let i = 0; i < 32; i += 2) out.push(parseInt(hex.substr(i, 2), 16));
  return out;
}

function randomId() {
  const out = [];
  for (let i = 0; i < 16; i++) out.push(Math.floor(Math.random() * 256));
  return out;
}

function varint(n) {
  const out = [];
  while (n > 127) { out.push((n & 127) | 128); n = Math.floor(n / 128); }
  out.push(n);
  return out;
}

function field(tag, bytes) { return [tag, ...varint(bytes.length), ...bytes]; }

// SendMessageRequest{messages: [{submission_id, device_id, message}]}; the message carries the send
// time as 13 ASCII digits so the receiving VU can measure delivery latency.
export function sendBody(deviceId, padBytes) {
  const stamp = String(Date.now());
  const message = [];
  for (let i = 0; i < stamp.length; i++) message.push(stamp.charCodeAt(i));
  for (let i = 0; i < (padBytes || 0); i++) message.push(0);
  const sub = [...field(0x0a, randomId()), ...field(0x12, uuidBytes(deviceId)), ...field(0x1a, message)];
  return new Uint8Array(field(0x0a, sub)).buffer;
}

function readVarint(buf, pos) {
  let value = 0, shift = 1;
  for (;;) {
    const b = buf[pos++];
    value += (b & 127) * shift;
    if (b < 128) return [value, pos];
    shift *= 128;
  }
}

// WebSocketFrame{envelope_batch(13): {envelopes(1): {id(1), message(4)}}} -> [{id: [..16], sentMs}]
export function decodeBatch(arrayBuffer) {
  const buf = new Uint8Array(arrayBuffer);
  if (buf.length === 0 || buf[0] !== 0x6a) return [];
  let [len, pos] = readVarint(buf, 1);
  const end = pos + len, out = [];
  while (pos < end) {
    pos += 1;  // tag of envelopes (0x0a)
    let envLen;
    [envLen, pos] = readVarint(buf, pos);
    const envEnd = pos + envLen;
    const env = { id: null, sentMs: null };
    while (pos < envEnd) {
      const tag = buf[pos++];
      const wire = tag & 7;
      if (wire === 0) { [, pos] = readVarint(buf, pos); continue; }
      let n;
      [n, pos] = readVarint(buf, pos);
      if (tag === 0x0a) env.id = Array.from(buf.subarray(pos, pos + n));
      if (tag === 0x22) env.sentMs = parseInt(String.fromCharCode(...buf.subarray(pos, pos + 13)), 10);
      pos += n;
    }
    out.push(env);
  }
  return out;
}

// WebSocketFrame{ack(11): AckMessage{message_ids(1)...}}
export function ackFrame(ids) {
  const inner = [];
  for (const id of ids) inner.push(...field(0x0a, id));
  return new Uint8Array(field(0x5a, inner)).buffer;
}
