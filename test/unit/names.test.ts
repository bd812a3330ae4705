// src/daemon/names.ts: DNS for `<member>.<domain>` (A, NODATA, NXDOMAIN), forwarding everything
// else to the resolv.conf upstreams, malformed queries; and the optional `domain` of NetworkInfo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as dns from 'dns-packet';
import { pino } from 'pino';
import { NameServer, answer, defaultDomain, domainError, meshSources, networkDomain, readResolvConf, servfail } from '../../src/daemon/names.js';
import { NetworkInfoSchema } from '../../src/discovery/records.js';
import { newNetwork } from '../../src/discovery/signer.js';

const DOMAIN = 'mesh.internal';
const NAMES = new Map([['alpha', '10.0.0.1'], ['bravo', '10.0.0.2']]);
const FOUNDER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK';

function query(name: string, type: dns.RecordType = 'A', id = 4242): Buffer {
  return dns.encode({ type: 'query', id, flags: dns.RECURSION_DESIRED, questions: [{ type, name, class: 'IN' }] });
}

function local(q: Buffer) {
  const r = answer(q, { domain: DOMAIN, names: NAMES });
  assert.equal(r.kind, 'reply');
  return dns.decode((r as { packet: Buffer }).packet) as dns.DecodedPacket & { rcode: string };
}

test('answer: A for a member under the domain, case-insensitive, authoritative, same id', () => {
  const r = local(query('bravo.mesh.internal'));
  assert.equal(r.id, 4242);
  assert.equal(r.type, 'response');
  assert.equal(r.rcode, 'NOERROR');
  assert.equal(r.flag_aa, true);
  assert.deepEqual(r.answers?.map((a) => [a.type, a.name, (a as { data: string }).data]), [['A', 'bravo.mesh.internal', '10.0.0.2']]);
  const upper = local(query('ALPHA.Mesh.Internal.'));
  assert.equal((upper.answers?.[0] as { data: string }).data, '10.0.0.1');
});

test('answer: NXDOMAIN for unknown names under the domain; NODATA for other types; the domain itself exists', () => {
  assert.equal(local(query('charlie.mesh.internal')).rcode, 'NXDOMAIN');
  assert.equal(local(query('x.bravo.mesh.internal')).rcode, 'NXDOMAIN');
  const aaaa = local(query('bravo.mesh.internal', 'AAAA'));
  assert.equal(aaaa.rcode, 'NOERROR');
  assert.equal(aaaa.answers?.length, 0);
  const apex = local(query('mesh.internal'));
  assert.equal(apex.rcode, 'NOERROR');
  assert.equal(apex.answers?.length, 0);
});

test('answer: names outside the domain are forwarded (also look-alikes), responses dropped', () => {
  assert.equal(answer(query('example.test'), { domain: DOMAIN, names: NAMES }).kind, 'forward');
  assert.equal(answer(query('bravomesh.internal'), { domain: DOMAIN, names: NAMES }).kind, 'forward');
  const resp = dns.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'bravo.mesh.internal' }] });
  assert.equal(answer(resp, { domain: DOMAIN, names: NAMES }).kind, 'drop', 'a response is never answered: no ping-pong');
});

test('answer: malformed queries are FORMERR with their id, or dropped; never a throw', () => {
  assert.equal(answer(Buffer.alloc(0), { domain: DOMAIN, names: NAMES }).kind, 'drop');
  assert.equal(answer(Buffer.from([1, 2, 3]), { domain: DOMAIN, names: NAMES }).kind, 'drop');
  // A header that promises a question that is not there.
  const bad = Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, 0x61]);
  const r = answer(bad, { domain: DOMAIN, names: NAMES });
  assert.equal(r.kind, 'reply');
  const d = dns.decode((r as { packet: Buffer }).packet) as dns.DecodedPacket & { rcode: string };
  assert.equal(d.id, 0x1234);
  assert.equal(d.rcode, 'FORMERR');
  // Two questions: FORMERR. A compression pointer loop: FORMERR, not a hang.
  const two = dns.encode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'a.mesh.internal' }, { type: 'A', name: 'b.mesh.internal' }] });
  assert.equal((dns.decode((answer(two, { domain: DOMAIN, names: NAMES }) as { packet: Buffer }).packet) as unknown as { rcode: string }).rcode, 'FORMERR');
  const loop = Buffer.from([0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  assert.equal(answer(loop, { domain: DOMAIN, names: NAMES }).kind, 'reply');
  // A non-QUERY opcode (UPDATE): NOTIMP.
  const update = Buffer.from(query('bravo.mesh.internal'));
  update.writeUInt16BE(5 << 11, 2);
  assert.equal((dns.decode((answer(update, { domain: DOMAIN, names: NAMES }) as { packet: Buffer }).packet) as unknown as { rcode: string }).rcode, 'NOTIMP');
  // Random bytes: whatever comes back, no exception.
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.alloc(12 + Math.floor(Math.random() * 60));
    for (let j = 0; j < b.length; j++) b[j] = Math.floor(Math.random() * 256);
    answer(b, { domain: DOMAIN, names: NAMES });
  }
  assert.equal(servfail(Buffer.from([1, 2])), null);
});

test('readResolvConf: nameservers in order, without ours, duplicates or junk; 127.0.0.53 kept', () => {
  const text = '# comment\nnameserver 10.0.0.1\nsearch lan\nnameserver 127.0.0.53\nnameserver 127.0.0.53\nnameserver bogus\nnameserver fe80::1%eth0\noptions edns0\n';
  assert.deepEqual(readResolvConf(text, new Set(['10.0.0.1'])), ['127.0.0.53', 'fe80::1']);
});

test('meshSources: the mesh range and loopback only', () => {
  const allow = meshSources('10.0.0.0/24');
  for (const ok of ['10.0.0.1', '10.0.0.254', '127.0.0.1', '127.1.2.3']) assert.equal(allow(ok), true, ok);
  for (const no of ['10.0.1.1', '192.168.77.3', '9.255.255.255', '::1', 'fe80::1', '']) assert.equal(allow(no), false, no);
  assert.equal(meshSources('100.64.0.0/10')('100.127.255.1'), true);
});

test('domain: default <network>.internal, validation, NetworkInfo with and without it', () => {
  assert.equal(defaultDomain('mesh'), 'mesh.internal');
  assert.equal(domainError('corp.internal'), null);
  assert.equal(domainError('home.arpa'), null);
  assert.match(domainError('Corp.Internal') ?? '', /lower-case/);
  assert.notEqual(domainError('a..b'), null);
  assert.notEqual(domainError('-a.b'), null);
  assert.notEqual(domainError('x'.repeat(190)), null);
  // A genesis from before the field still parses, and answers <network>.internal.
  const old = newNetwork({ name: 'mesh', founder: FOUNDER });
  assert.equal('domain' in old, false, 'no domain: the field is left out, old members still read it');
  assert.equal(networkDomain(NetworkInfoSchema.parse(old)), 'mesh.internal');
  const chosen = newNetwork({ name: 'mesh', founder: FOUNDER, domain: 'corp.internal' });
  assert.equal(networkDomain(NetworkInfoSchema.parse(chosen)), 'corp.internal');
  assert.throws(() => NetworkInfoSchema.parse({ ...old, domain: 'Bad Domain' }));
  assert.throws(() => NetworkInfoSchema.parse({ ...old, other: 1 }), 'still strict');
});

/** A fake upstream on 127.0.0.1, random port: answers example.test A 192.0.2.53, REFUSED otherwise. */
async function fakeUpstream(): Promise<{ sock: Socket; port: number; seen: string[] }> {
  const sock = createSocket('udp4');
  const seen: string[] = [];
  sock.on('message', (msg, rinfo) => {
    const q = dns.decode(msg);
    const name = q.questions?.[0]?.name ?? '';
    seen.push(name);
    const known = name === 'example.test';
    sock.send(dns.encode({
      type: 'response', id: q.id ?? 0, flags: known ? 0 : 5, questions: q.questions ?? [],
      answers: known ? [{ type: 'A', name, ttl: 30, data: '192.0.2.53' }] : [],
    }), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { sock, port: sock.address().port, seen };
}

async function ask(port: number, q: Buffer, host = '127.0.0.2'): Promise<dns.DecodedPacket & { rcode: string }> {
  const c = createSocket('udp4');
  try {
    return await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no answer')), 3000);
      c.on('message', (m) => {
        clearTimeout(t);
        resolve(dns.decode(m) as dns.DecodedPacket & { rcode: string });
      });
      c.send(q, port, host);
    });
  } finally {
    c.close();
  }
}

test('NameServer: members answered, the rest forwarded to the resolv.conf upstream, over UDP and TCP', async () => {
  const up = await fakeUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'names-'));
  const conf = join(dir, 'resolv.conf');
  // Our own address first: skipped (it would be a loop); then the fake upstream.
  writeFileSync(conf, 'nameserver 127.0.0.2\nnameserver 127.0.0.1\n');
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  const server = new NameServer({ names: () => NAMES, domain: () => DOMAIN, logger, resolvConf: conf, port: 0, upstreamPort: up.port });
  try {
    await server.listen('127.0.0.2');
    const port = server.address!.port;
    const a = await ask(port, query('bravo.mesh.internal'));
    assert.equal((a.answers?.[0] as { data: string }).data, '10.0.0.2');
    assert.equal((await ask(port, query('nobody.mesh.internal'))).rcode, 'NXDOMAIN');
    assert.equal(up.seen.length, 0, 'our own names never go upstream');
    const f = await ask(port, query('example.test', 'A', 999));
    assert.equal(f.id, 999);
    assert.equal((f.answers?.[0] as { data: string }).data, '192.0.2.53');
    assert.deepEqual(up.seen, ['example.test']);
    assert.equal((await ask(port, query('other.test'))).rcode, 'REFUSED', "the upstream's answer, as it gave it");
    // Garbage does not stop it.
    const c = createSocket('udp4');
    c.send(Buffer.from('garbage that is not dns'), port, '127.0.0.2');
    c.send(Buffer.alloc(3), port, '127.0.0.2');
    await new Promise((r) => setTimeout(r, 100));
    c.close();
    const again = await ask(port, query('alpha.mesh.internal'));
    assert.equal((again.answers?.[0] as { data: string }).data, '10.0.0.1');
    // TCP: two length-prefixed queries on one connection.
    const replies = await new Promise<Buffer[]>((resolve, reject) => {
      const s = connect({ host: '127.0.0.2', port });
      let buf = Buffer.alloc(0);
      const out: Buffer[] = [];
      s.on('error', reject);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (out.length === 2) {
          s.destroy();
          resolve(out);
        }
      });
      s.write(Buffer.concat([dns.streamEncode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'bravo.mesh.internal' }] }),
        dns.streamEncode({ type: 'query', id: 2, questions: [{ type: 'A', name: 'zulu.mesh.internal' }] })]));
    });
    assert.equal((dns.decode(replies[0]!).answers?.[0] as { data: string }).data, '10.0.0.2');
    assert.equal((dns.decode(replies[1]!) as { rcode?: string }).rcode, 'NXDOMAIN');
    // A second server on the same address and port: one warning, no throw.
    const clash = new NameServer({ names: () => NAMES, domain: () => DOMAIN, logger, resolvConf: conf, port });
    await clash.listen('127.0.0.2');
    assert.equal(clash.address, null);
    assert.equal(lines.filter((l) => l.level === 40 && /cannot answer DNS/.test(l.msg)).length, 1);
    await clash.close();
    // Rebinding to another address: the old one is released.
    await server.listen('127.0.0.3');
    assert.notEqual(server.address, null);
    assert.equal(server.address!.ip, '127.0.0.3');
  } finally {
    await server.close();
    up.sock.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('NameServer: no upstream answers: SERVFAIL, not silence', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'names-'));
  const conf = join(dir, 'resolv.conf');
  writeFileSync(conf, '# nothing\n');
  const server = new NameServer({ names: () => NAMES, domain: () => DOMAIN, logger: pino({ level: 'silent' }), resolvConf: conf, port: 0 });
  try {
    await server.listen('127.0.0.1');
    assert.equal((await ask(server.address!.port, query('example.test'), '127.0.0.1')).rcode, 'SERVFAIL');
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
