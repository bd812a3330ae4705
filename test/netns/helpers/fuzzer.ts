// A mutating UDP relay aimed at one WireGuard port (the target). It sits between a legitimate peer
// and the target and forwards every datagram both ways untouched, so the tunnel works through it.
// On SIGUSR1 it also starts throwing datagrams at the target for a few seconds: random bytes, wrong
// types, well-formed headers with garbage bodies, initiations with a valid mac1 (so they cost the
// target a DH), and mutations of the real traffic it has just relayed: bit flips, truncations,
// extensions, forged counters on a live receiver index, exact replays. Mutating real packets goes
// deepest, since they carry live receiver indices and counters. They leave from the relay's own
// socket (the peer's endpoint as the target knows it) or from strangers' sockets (a replay from a
// stranger must not make the target roam there).
//
// Usage: node fuzzer.js '{"inner":"127.0.0.1:40000","outer":"192.168.241.1:40001",
//          "target":"192.168.241.2:51820","targetPub":"<base64>","seconds":6,"rate":5000}'
// IPv4 only. Prints "ready" once bound, then one JSON line of statistics when the fuzzing ends
// ({sent, byKind, repliesToStrangers: {messageType: count}}), and keeps relaying until killed.
import { createSocket } from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';

interface Config {
  inner: string;
  outer: string;
  target: string;
  targetPub: string;
  seconds: number;
  rate: number;
}
const cfg = JSON.parse(process.argv[2]) as Config;
const hostPort = (s: string) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};
const inner = hostPort(cfg.inner);
const outer = hostPort(cfg.outer);
const target = hostPort(cfg.target);

// The relay. `peer` is the legitimate peer's address, learnt from its first datagram.
let peer: { address: string; port: number } | null = null;
const innerSock = createSocket('udp4');
const outerSock = createSocket('udp4');
// Strangers: same host, other ports. What the target answers them is only counted, by message
// type: cookie replies are fine, a handshake response to a replayed initiation is not.
const strangers = Array.from({ length: 4 }, () => createSocket('udp4'));
for (const s of [innerSock, outerSock, ...strangers]) s.on('error', () => {}); // e.g. ICMP unreachable
const repliesToStrangers: Record<number, number> = {};
for (const s of strangers) s.on('message', (msg) => (repliesToStrangers[msg[0]] = (repliesToStrangers[msg[0]] ?? 0) + 1));

/** Recent real datagrams from the peer to the target, with when they were relayed. */
const seen: { at: number; msg: Buffer }[] = [];
let firstInitiation: Buffer | null = null;
innerSock.on('message', (msg, rinfo) => {
  peer = { address: rinfo.address, port: rinfo.port };
  outerSock.send(msg, target.port, target.host);
  if (msg.length === 148 && msg[0] === 1) firstInitiation ??= Buffer.from(msg);
  seen.push({ at: Date.now(), msg: Buffer.from(msg) });
  if (seen.length > 256) seen.shift();
});
outerSock.on('message', (msg, rinfo) => {
  if (peer && rinfo.address === target.host && rinfo.port === target.port) innerSock.send(msg, peer.port, peer.address);
});

// mac1 = MAC(HASH("mac1----" || target's public key), message up to mac1): the cheap check a
// responder makes before any DH. A valid one lets garbage through to the expensive part.
const mac1Key = blake2s(Buffer.concat([Buffer.from('mac1----'), Buffer.from(cfg.targetPub, 'base64')]));
function withMac1(msg: Buffer): Buffer {
  const at = msg.length - 32;
  Buffer.from(blake2s(msg.subarray(0, at), { key: mac1Key, dkLen: 16 })).copy(msg, at);
  msg.fill(0, at + 16); // no mac2 (no cookie)
  return msg;
}

function typed(type: number, len: number): Buffer {
  const b = randomBytes(len);
  b.writeUInt32LE(type, 0);
  return b;
}

/**
 * A real datagram old enough that the target has certainly received the original (so a replay of
 * it is a replay, not the first copy, which would legitimately move the endpoint to the sender).
 */
function oldReal(): Buffer | null {
  const old = seen.filter((s) => Date.now() - s.at > 100);
  return old.length ? Buffer.from(old[randomInt(old.length)].msg) : null;
}

type Source = 'relay' | 'stranger';
/** A mutated copy of a real datagram; transport messages may come from the relay's own socket. */
function mutateReal(mutate: (b: Buffer) => Buffer): [Buffer, Source] | null {
  const b = oldReal();
  if (!b) return null;
  const from: Source = b[0] === 4 && randomInt(2) ? 'relay' : 'stranger';
  return [mutate(b), from];
}

// Each generator returns a datagram and where it may come from. Anything derived from a handshake
// message only comes from strangers: the target may answer it with a cookie reply, which must not
// reach the real peer, whose state (and counters) must depend on real traffic only.
const GENERATORS: Record<string, () => [Buffer, Source] | null> = {
  random: () => [randomBytes(randomInt(0, 100) === 0 ? randomInt(1501, 4000) : randomInt(0, 1501)), 'stranger'],
  wrongType: () => {
    const b = oldReal() ?? typed(4, 64);
    b.writeUInt32LE(randomInt(2) ? randomInt(5, 256) : (b.readUInt32LE(0) | (randomInt(1, 256) << (8 * randomInt(1, 4)))) >>> 0, 0); // unknown type, or reserved bytes set
    return [b, 'stranger'];
  },
  garbageBody: () => {
    const [type, len] = [[1, 148], [2, 92], [3, 64], [4, 32 + randomInt(0, 1420)]][randomInt(4)];
    return [typed(type, len), 'stranger'];
  },
  mac1Initiation: () => [withMac1(typed(1, 148)), 'stranger'],
  mac1Response: () => [withMac1(typed(2, 92)), 'stranger'],
  handshakeReplay: () => (firstInitiation ? [Buffer.from(firstInitiation), 'stranger'] : null),
  bitFlip: () =>
    mutateReal((b) => {
      for (let n = randomInt(1, 4); n > 0; n--) b[randomInt(b.length)] ^= 1 << randomInt(8);
      return b;
    }),
  truncated: () => mutateReal((b) => b.subarray(0, randomInt(0, b.length))),
  extended: () => mutateReal((b) => Buffer.concat([b, randomBytes(randomInt(1, 65))])),
  // A live receiver index with a counter far ahead and a garbage body: if the target moved its
  // replay window before authenticating, every real packet after this would look old.
  forgedCounter: () => {
    const b = oldReal();
    if (!b || b[0] !== 4) return null;
    b.writeBigUInt64LE(b.readBigUInt64LE(8) + BigInt(randomInt(1, 1 << 30)), 8);
    randomBytes(b.length - 16).copy(b, 16);
    return [b, randomInt(2) ? 'relay' : 'stranger'];
  },
  transportReplay: () => {
    const b = oldReal();
    return b && b[0] === 4 ? [b, randomInt(2) ? 'relay' : 'stranger'] : null;
  },
};
const KINDS = Object.keys(GENERATORS);

const stats = { sent: 0, byKind: Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<string, number>, repliesToStrangers };
function fuzz(): void {
  const end = Date.now() + cfg.seconds * 1000;
  const perTick = Math.max(1, Math.round(cfg.rate / 200)); // a burst every 5 ms
  const tick = setInterval(() => {
    if (Date.now() >= end) {
      clearInterval(tick);
      console.log(JSON.stringify(stats));
      return;
    }
    for (let i = 0; i < perTick; i++) {
      const kind = KINDS[randomInt(KINDS.length)];
      const d = GENERATORS[kind]();
      if (!d) continue;
      const [msg, from] = d;
      (from === 'relay' ? outerSock : strangers[randomInt(strangers.length)]).send(msg, target.port, target.host);
      stats.sent++;
      stats.byKind[kind]++;
    }
  }, 5);
}
process.once('SIGUSR1', fuzz);

innerSock.bind(inner.port, inner.host, () =>
  outerSock.bind(outer.port, outer.host, () => {
    let pending = strangers.length;
    for (const s of strangers) s.bind(0, outer.host, () => --pending || console.log('ready'));
  }),
);
