// Plain WireGuard clients with real daemons: a "phone" in a namespace of its own on the LAN runs
// stock wg-quick with wireguard-go on the config `meshd client add` printed. What a user checks:
// the phone reaches every member and every member the phone; the QR code PNG decodes to the
// config; removing the client, or kicking its host, cuts it off everywhere within 10 s; only
// administrators add clients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Lan, type MeshNode } from './mesh.js';
import { genKey, ping, waitFor } from './harness.js';

const run = promisify(execFile);
const USERSPACE = { WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go' };

interface ClientRow { name: string; ip: string; host: string; hostedHere: boolean }

const reaches = async (lan: Lan, ns: string, ip: string) => (await ping(lan.t, ns, ip, { count: 1, wait: 1 })).received === 1;
const list = async (lan: Lan, n: MeshNode) => (JSON.parse(await lan.cli(n, ['client', 'list', '--json'])) as { clients: ClientRow[] }).clients;

/** A device on the LAN: wg-quick up on `config` (its DNS line dropped: that would call resolvconf). */
class Device {
  readonly ifname: string;
  private up = false;
  constructor(private readonly lan: Lan, readonly ns: string, private readonly dir: string) {
    this.ifname = lan.t.name('w');
    lan.t.trackSocket(`/var/run/wireguard/${this.ifname}.sock`);
  }

  get file(): string {
    return join(this.dir, `${this.ifname}.conf`);
  }

  async start(config: string): Promise<void> {
    writeFileSync(this.file, `${config.split('\n').filter((l) => !l.startsWith('DNS =')).join('\n')}\n`, { mode: 0o600 });
    await this.lan.t.exec(this.ns, 'wg-quick', ['up', this.file], { env: USERSPACE });
    this.up = true;
  }

  async stop(): Promise<void> {
    if (!this.up) return;
    this.up = false;
    await this.lan.t.exec(this.ns, 'wg-quick', ['down', this.file], { env: USERSPACE }).catch(() => {});
  }
}

test('a phone with plain WireGuard: admitted by an administrator, reaches every member and is reached; its QR code is its config; removed or its host kicked, it is cut off within 10 s', { timeout: 240_000 }, async (tc) => {
  const lan = new Lan();
  const dir = mkdtempSync(join(tmpdir(), 'meshd-clients-'));
  let device: Device | null = null;
  tc.after(async () => {
    await device?.stop();
    await lan.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  await lan.init();
  const [a, b, c] = await lan.lanMesh(['alpha', 'bravo', 'charlie']);
  const members = [a, b, c];
  const ipOf = async (n: MeshNode) => (await lan.status(n)).self.meshIp!;
  const meshIps = await Promise.all(members.map(ipOf));

  // Only administrators: charlie is refused, and nothing changed.
  await assert.rejects(lan.cli(c, ['client', 'add', 'phone']), /only an administrator can add clients/);
  assert.deepEqual(await list(lan, a), []);

  // bravo, made an administrator, hosts the phone.
  await lan.cli(a, ['promote', 'bravo']);
  const png = join(dir, 'phone.png');
  await waitFor(async () => (await lan.status(b)).self.admin, 10_000, 'bravo to learn it is an administrator');
  const config = await lan.cli(b, ['client', 'add', 'phone', '--qr-png', png]);
  const { publicKey: bravoKey, listenPort: port } = (await lan.status(b)).self;
  const m = new RegExp(String.raw`^\[Interface\]\nPrivateKey = [A-Za-z0-9+/]{43}=\nAddress = (10\.0\.0\.\d+)/32\nDNS = ${meshIps[1].replace(/\./g, '\\.')}\n\n` +
    String.raw`\[Peer\]\nPublicKey = ${bravoKey.replace(/[+/]/g, '\\$&')}\nEndpoint = ${b.lanIp.replace(/\./g, '\\.')}:${port}\nAllowedIPs = 10\.0\.0\.0/24\nPersistentKeepalive = 25$`).exec(config);
  assert.ok(m, `a wg-quick config and nothing else:\n${config}`);
  const phoneIp = m[1];
  assert.ok(!meshIps.includes(phoneIp), 'an address of its own from the pool');
  // The PNG decodes to exactly the printed config; show prints it again on the host.
  const { stdout: decoded } = await run('zbarimg', ['--raw', '-q', png]);
  assert.equal(decoded.trim(), config);
  assert.equal(await lan.cli(b, ['client', 'show', 'phone']), config);
  await assert.rejects(lan.cli(a, ['client', 'show', 'phone']), /phone is hosted by bravo: run meshd client show there/);
  // --qr: a QR code that fits an 80-column terminal.
  const qr = (await lan.cli(b, ['client', 'show', 'phone', '--qr'])).split('\n');
  assert.ok(qr.length > 20 && qr.every((l) => [...l].length <= 80), `a QR code at most 80 columns wide:\n${qr.join('\n')}`);
  // --public-key: the device's own key pair; the config leaves PrivateKey to the user, show too.
  const own = await genKey();
  const laptop = await lan.cli(b, ['client', 'add', 'laptop', '--public-key', own.pub]);
  assert.match(laptop, /^\[Interface\]\n# PrivateKey = .*fill it in\)\nAddress = 10\.0\.0\.\d+\/32\n/);
  assert.equal(await lan.cli(b, ['client', 'show', 'laptop']), laptop);
  await assert.rejects(lan.cli(b, ['client', 'add', 'laptop2', '--public-key', own.pub]), /that public key is already laptop's/);
  await assert.rejects(lan.cli(b, ['client', 'add', 'laptop3', '--public-key', 'nope']), /is not a WireGuard public key/);
  await assert.rejects(lan.cli(c, ['client', 'remove', 'laptop']), /only an administrator can remove clients/);
  assert.match(await lan.cli(a, ['client', 'remove', 'laptop']), /removed client laptop/);
  // Names are unique; bravo is no exit node.
  await assert.rejects(lan.cli(b, ['client', 'add', 'charlie']), /the name charlie is taken by a member or a client/);
  await assert.rejects(lan.cli(b, ['client', 'add', 'tablet', '--exit-node']), /bravo is not an exit node/);
  // An approved subnet route in use goes into AllowedIPs; an approved exit node may give 0.0.0.0/0.
  await lan.cli(c, ['routes', 'advertise', '192.168.60.0/24']);
  await lan.cli(a, ['routes', 'approve', 'charlie', '192.168.60.0/24']);
  await lan.cli(b, ['routes', 'advertise', '0.0.0.0/0']);
  await lan.cli(a, ['routes', 'approve', 'bravo', '0.0.0.0/0']);
  let travel = '';
  await waitFor(async () => {
    if (travel === '') travel = await lan.cli(b, ['client', 'add', 'travel', '--exit-node']).catch(() => '');
    else travel = await lan.cli(b, ['client', 'show', 'travel']);
    return travel.includes('192.168.60.0/24');
  }, 10_000, 'bravo to be an approved exit node and to use charlie\'s route');
  assert.match(travel, /\nAllowedIPs = 10\.0\.0\.0\/24, 192\.168\.60\.0\/24, 0\.0\.0\.0\/0\n/);
  await lan.cli(b, ['client', 'remove', 'travel']);
  await lan.cli(b, ['routes', 'withdraw', '0.0.0.0/0']);
  await lan.cli(c, ['routes', 'withdraw', '192.168.60.0/24']);
  await waitFor(async () => (await list(lan, c)).some((r) => r.name === 'phone' && r.host === 'bravo' && r.ip === phoneIp), 10_000, 'charlie to see the phone');
  assert.match(await lan.cli(a, ['client', 'list']), new RegExp(`phone\\s+${phoneIp.replace(/\./g, '\\.')}\\s+bravo`));

  // The phone: stock wg-quick and wireguard-go on the LAN.
  const phoneNs = await lan.addHost('d', 50);
  device = new Device(lan, phoneNs, dir);
  await device.start(config);
  const t0 = Date.now();
  await waitFor(async () => {
    const out = await Promise.all(meshIps.map((ip) => reaches(lan, phoneNs, ip)));
    const back = await Promise.all(members.map((n) => reaches(lan, n.ns, phoneIp)));
    return [...out, ...back].every(Boolean);
  }, 20_000, 'the phone to reach every member and every member the phone');
  tc.diagnostic(`phone up -> reaches and is reached by every member in ${Date.now() - t0} ms`);
  // Names: the phone asks its DNS server (its host) for a member, and a member resolves the phone.
  const dig = async (ns: string, server: string, name: string) => (await lan.t.exec(ns, 'dig', [`@${server}`, name, '+short', '+time=2', '+tries=2'])).stdout.trim();
  assert.equal(await dig(phoneNs, meshIps[1], 'alpha.mesh.internal'), meshIps[0], 'the phone resolves a member through its host');
  assert.equal(await dig(a.ns, meshIps[0], 'phone.mesh.internal'), phoneIp, 'a member resolves the phone');

  // Removed (by alpha): cut off everywhere within 10 s.
  const t1 = Date.now();
  assert.match(await lan.cli(a, ['client', 'remove', 'phone']), /removed client phone/);
  await waitFor(async () => {
    const out = await Promise.all(meshIps.map((ip) => reaches(lan, phoneNs, ip)));
    const back = await Promise.all(members.map((n) => reaches(lan, n.ns, phoneIp)));
    return ![...out, ...back].some(Boolean);
  }, 10_000, 'the removed phone to be cut off everywhere');
  tc.diagnostic(`client remove -> cut off everywhere in ${Date.now() - t1} ms`);
  assert.deepEqual(await list(lan, b), []);
  await device.stop();

  // Hosted by bravo again, then bravo is kicked: its device goes with it.
  const again = await lan.cli(b, ['client', 'add', 'tablet']);
  const tabletIp = /Address = (\S+)\/32/.exec(again)![1];
  await device.start(again);
  await waitFor(async () => (await reaches(lan, a.ns, tabletIp)) && (await reaches(lan, c.ns, tabletIp)), 20_000, 'alpha and charlie to reach the tablet');
  await lan.cli(a, ['kick', 'bravo']);
  await waitFor(async () => {
    const gone = (await list(lan, a)).length === 0 && (await list(lan, c)).length === 0;
    return gone && !(await reaches(lan, a.ns, tabletIp)) && !(await reaches(lan, c.ns, tabletIp)) && !(await reaches(lan, phoneNs, meshIps[0]));
  }, 10_000, 'the kicked host\'s tablet to be gone');
});
