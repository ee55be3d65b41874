// Peak WebSocket concurrency with churn: VUs ramp to PEAK; each opens a ticketed session, holds it
// HOLD_MIN_S..HOLD_MAX_S seconds, closes it and connects again.
//   k6 run -e BASE_URL=http://127.0.0.1:3000 -e USERS=users.json -e PEAK=5000 bench/k6/churn.js
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { WebSocket } from 'k6/experimental/websockets';
import { WS_BASE, USERS, ticket } from './lib.js';

const PEAK = parseInt(__ENV.PEAK || '2000', 10);
const RAMP_S = parseInt(__ENV.RAMP_S || '30', 10);
const HOLD_S = parseInt(__ENV.STEADY_S || '30', 10);
const MIN_S = parseFloat(__ENV.HOLD_MIN_S || '5');
const MAX_S = parseFloat(__ENV.HOLD_MAX_S || '15');

const opened = new Counter('sessions_opened');
const wsErrors = new Counter('ws_errors');

export const options = {
  scenarios: {
    churn: { executor: 'ramping-vus', startVUs: 0, gracefulRampDown: `${MAX_S + 5}s`,
             stages: [{ duration: `${RAMP_S}s`, target: PEAK }, { duration: `${HOLD_S}s`, target: PEAK },
                      { duration: '5s', target: 0 }] },
  },
  thresholds: {
    'ws_connecting': [`p(95)<${__ENV.CONNECT_P95_MS || 1000}`],
    'checks': ['rate>0.99'],
    'ws_errors': ['count<1'],
  },
};

export default function () {
  const user = USERS[(__VU - 1) % USERS.length];
  const t = ticket(user.token);
  if (!check(t, { 'ticket issued': (x) => x !== null })) { sleep(1); return; }
  const ws = new WebSocket(`${WS_BASE}/v1/gateway?ticket=${t}`);
  let closing = false;
  ws.onopen = () => {
    opened.add(1);
    setTimeout(() => { closing = true; ws.close(); }, (MIN_S + Math.random() * (MAX_S - MIN_S)) * 1000);
  };
  ws.onerror = (e) => {
    if (closing && String(e.error).includes('close sent')) return;  // k6 answering a ping after our Close
    wsErrors.add(1);
    console.warn(`ws error: ${e.error}`);
  };
}
