// Send/deliver latency with thresholds: CONNS WebSocket sessions held (devices from users.json,
// several sessions per device when CONNS > users), fed RATE sends per second, each ACKed.
//   k6 run -e BASE_URL=http://127.0.0.1:3000 -e USERS=users.json -e CONNS=500 -e RATE=200 bench/k6/deliver.js
import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { WebSocket } from 'k6/experimental/websockets';
import { BASE, WS_BASE, USERS, ticket, sendBody, decodeBatch, ackFrame } from './lib.js';

const CONNS = parseInt(__ENV.CONNS || '500', 10);
const RATE = parseInt(__ENV.RATE || '200', 10);
const RAMP_S = parseInt(__ENV.RAMP_S || '15', 10);
const SEND_S = parseInt(__ENV.SEND_S || '20', 10);
const HOLD_S = RAMP_S + SEND_S + 5;

const delivery = new Trend('delivery_latency', true);
const delivered = new Counter('envelopes_delivered');
const wsErrors = new Counter('ws_errors');

export const options = {
  scenarios: {
    sessions: { executor: 'per-vu-iterations', vus: CONNS, iterations: 1, maxDuration: `${HOLD_S + 30}s`,
                exec: 'session' },
    senders: { executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: `${SEND_S}s`,
               preAllocatedVUs: 50, maxVUs: 200, startTime: `${RAMP_S}s`, exec: 'send' },
  },
  thresholds: {
    'delivery_latency': [`p(99)<${__ENV.P99_MS || 250}`, `p(50)<${__ENV.P50_MS || 50}`],
    'ws_connecting': [`p(95)<${__ENV.CONNECT_P95_MS || 1000}`],
    'checks': ['rate>0.99'],
    'ws_errors': ['count<1'],
    'http_req_failed{name:send}': ['rate<0.01'],
  },
};

export function session() {
  const vu = __VU - 1;
  const user = USERS[vu % USERS.length];
  sleep((RAMP_S * vu) / CONNS);  // spread the connects over the ramp
  const t = ticket(user.token);
  if (!check(t, { 'ticket issued': (x) => x !== null })) return;
  const ws = new WebSocket(`${WS_BASE}/v1/gateway?ticket=${t}`);
  ws.binaryType = 'arraybuffer';
  let closing = false;
  ws.onmessage = (e) => {
    const envs = decodeBatch(e.data);
    if (envs.length === 0) return;
    const now = Date.now();
    for (const env of envs) if (env.sentMs) delivery.add(now - env.sentMs);
    delivered.add(envs.length);
    if (!closing) ws.send(ackFrame(envs.map((x) => x.id)));  // no ACK after our Close
  };
  ws.onerror = (e) => {
    if (closing && String(e.error).includes('close sent')) return;  // k6 answering a ping after our Close
    wsErrors.add(1);
    console.warn(`ws error: ${e.error}`);
  };
  ws.onopen = () => {
    setTimeout(() => { closing = true; ws.close(); }, (HOLD_S - (RAMP_S * vu) / CONNS) * 1000);
  };
}

export function send() {
  const sender = USERS[Math.floor(Math.random() * USERS.length)];
  const target = USERS[Math.floor(Math.random() * Math.min(USERS.length, CONNS))];
  const res = http.post(`${BASE}/v1/messages`, sendBody(target.deviceId, 180), {
    headers: { Authorization: `Bearer ${sender.token}`, 'Content-Type': 'application/octet-stream',
               'Idempotency-Key': crypto.randomUUID() },
    tags: { name: 'send' },
  });
  check(res, { 'send accepted': (r) => r.status === 200 });
}
