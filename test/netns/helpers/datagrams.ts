// A stranger's datagram flood at one WireGuard port (abuse.test.ts): `count` datagrams at about
// `rate` a second, of every kind a hostile or broken sender makes: random bytes of any length
// 0-2000, message types 1-4 with the right and the wrong sizes, unknown types, initiations with a
// valid mac1 (each costs the target a DH unless it is under load and asks for a cookie), and
// mutations of real traffic: bit flips, truncations, extensions, forged counters, replays. Real
// traffic arrives on `capture` (the test copies a member's datagrams to it with iptables TEE).
//
// Usage: node datagrams.js '{"target":"192.168.77.2:51820","targetPub":"<base64>",
//          "capture":"192.168.77.200:40000","count":100000,"rate":5000}'
// Prints "ready" once bound, then one JSON line when done: { sent, byKind, captured, replies }.
import { createSocket } from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';

interface Config {
  target: string;
  targetPub: string;
  capture: string;
  count: number;
  rate: number;
}
const cfg = JSON.parse(process.argv[2]) as Config;
const hostPort = (s: string) => ({ host: s.slice(0, s.lastIndexOf(':')), port: Number(s.slice(s.lastIndexOf(':') + 1)) });
const target = hostPort(cfg.target);
const capture = hostPort(cfg.capture);

/** Real datagrams a member sent to the target, with when we saw them. */
const seen: { at: number; msg: Buffer }[] = [];
let captured = 0;
const tap = createSocket('udp4');
tap.on('message', (msg) => {
  captured++;
  seen.push({ at: Date.now(), msg });
  if (seen.length > 256) seen.shift();
});

// Several source ports; what the target answers is counted by message type.
const senders = Array.from({ length: 4 }, () => createSocket('udp4'));
const replies: Record<number, number> = {};
for (const s of [tap, ...senders]) s.on('error', () => {}); // ICMP unreachable and the like
for (const s of senders) s.on('message', (msg) => (replies[msg[0]] = (replies[msg[0]] ?? 0) + 1));

const mac1Key = blake2s(Buffer.concat([Buffer.from('mac1----'), Buffer.from(cfg.targetPub, 'base64')]));
function withMac1(msg: Buffer): Buffer {
  const at = msg.length - 32;
  Buffer.from(blake2s(msg.subarray(0, at), { key: mac1Key, dkLen: 16 })).copy(msg, at);
  msg.fill(0, at + 16);
  return msg;
}

function typed(type: number, len: number): Buffer {
  const b = randomBytes(len);
  if (len >= 4) b.writeUInt32LE(type, 0);
  else if (len > 0) b[0] = type;
  return b;
}

const RIGHT_SIZE: Record<number, () => number> = { 1: () => 148, 2: () => 92, 3: () => 64, 4: () => 32 + 16 * randomInt(0, 90) };

/**
 * A real datagram seen over 200 ms ago: the target has long had the original, so a copy of it is
 * a replay, not a first arrival that would rightly move the member's endpoint here.
 */
function oldReal(): Buffer | null {
  const old = seen.filter((s) => Date.now() - s.at > 200);
  return old.length ? Buffer.from(old[randomInt(old.length)].msg) : null;
}

const GENERATORS: Record<string, () => Buffer | null> = {
  random: () => randomBytes(randomInt(0, 2001)),
  rightSize: () => {
    const type = randomInt(1, 5);
    return typed(type, RIGHT_SIZE[type]());
  },
  wrongSize: () => {
    const type = randomInt(1, 5);
    let len = randomInt(0, 2001);
    if (len === RIGHT_SIZE[type]()) len++;
    return typed(type, len);
  },
  unknownType: () => typed((randomInt(5, 256) + (randomInt(2) ? randomInt(1, 1 << 24) * 256 : 0)) >>> 0, randomInt(4, 200)),
  mac1Initiation: () => withMac1(typed(1, 148)),
  bitFlip: () => {
    const b = oldReal();
    if (!b) return null;
    for (let n = randomInt(1, 4); n > 0; n--) b[randomInt(b.length)] ^= 1 << randomInt(8);
    return b;
  },
  truncated: () => oldReal()?.subarray(0, randomInt(0, 148)) ?? null,
  extended: () => {
    const b = oldReal();
    return b ? Buffer.concat([b, randomBytes(randomInt(1, 500))]) : null;
  },
  forgedCounter: () => {
    const b = oldReal();
    if (!b || b[0] !== 4 || b.length < 32) return null;
    b.writeBigUInt64LE(b.readBigUInt64LE(8) + BigInt(randomInt(1, 1 << 30)), 8);
    randomBytes(b.length - 16).copy(b, 16);
    return b;
  },
  replay: () => oldReal(),
};
const KINDS = Object.keys(GENERATORS);

const stats = { sent: 0, byKind: Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<string, number>, captured: 0, replies };

function flood(): void {
  const perTick = Math.max(1, Math.round(cfg.rate / 100)); // a burst every 10 ms
  const tick = setInterval(() => {
    for (let i = 0; i < perTick && stats.sent < cfg.count; i++) {
      let kind = KINDS[randomInt(KINDS.length)];
      let msg = GENERATORS[kind]();
      if (!msg) [kind, msg] = ['random', GENERATORS.random()!]; // nothing captured yet
      senders[randomInt(senders.length)].send(msg, target.port, target.host);
      stats.sent++;
      stats.byKind[kind]++;
    }
    if (stats.sent >= cfg.count) {
      clearInterval(tick);
      // answers still on their way are counted for a moment more
      setTimeout(() => {
        stats.captured = captured;
        console.log(JSON.stringify(stats));
        process.exit(0);
      }, 500);
    }
  }, 10);
}

tap.bind(capture.port, capture.host, () => {
  let pending = senders.length;
  for (const s of senders) s.bind(0, capture.host, () => --pending || (console.log('ready'), flood()));
});
