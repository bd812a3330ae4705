// A former administrator attacking running daemons with everything it kept (insider.test.ts):
//
//   node insider.js <state dir> <extra events file> <mode> <at ms> <wg endpoint> <target multiaddr>...
//
// It opens a copy of an administrator's state directory (the daemon is not running on it), folds
// the stored envelopes plus the events it signed on earlier runs (<extra events file>, a JSON
// array, created if missing) into a Ledger, and with the administrator's old identity signs, as
// the next events of its own chain (deps: only what that copy had seen), an invite and the
// admission of a new identity it makes up, with the invite's proof, both dated <at ms>; plus the
// new identity's record with a fresh WireGuard key and <wg endpoint>. Then it starts a libp2p node
// AS THE NEW IDENTITY (a non-member holding the network key: the old identity would be refused at
// the connection gate) and pushes [invite, admit, record] to every target on the push protocol.
// <mode> ('control' or 'backdated') is only echoed back: the dates come from <at ms>.
//
// It appends the three envelopes to <extra events file> and prints one JSON line:
//   { mode, signer, y: peer id, wgKey, meshIp, signed: [{ type, id, seq?, prev?, deps?, at }],
//     envelopes: [invite, admit, record], pushed: [{ target, ok, detail }] }
// ok: the member read the whole push and then closed its side cleanly (not a reset or a refusal).
// Run inside a test namespace: it talks only to the target multiaddrs.
import '../../../src/util/polyfill.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { privateKeyFromProtobuf, generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { Store } from '../../../src/store/store.js';
import { Ledger } from '../../../src/discovery/ledger.js';
import { Signer, record } from '../../../src/discovery/signer.js';
import { inviteProof } from '../../../src/discovery/invite.js';
import { createMeshNode, FrameStream } from '../../../src/discovery/p2p.js';
import { pushProtocol } from '../../../src/discovery/sync.js';
import { eventId, type SignedEnvelope } from '../../../src/discovery/signed.js';
import { generatePrivateKey, staticKey, toBase64 } from '../../../src/wg/crypto.js';

const [stateDir, extraFile, mode, atText, endpoint, ...targets] = process.argv.slice(2);
const at = Number(atText);
if (!stateDir || !extraFile || !mode || !Number.isSafeInteger(at) || !endpoint || targets.length === 0) {
  console.error('usage: insider.js <state dir> <extra events file> <mode> <at ms> <wg endpoint> <target multiaddr>...');
  process.exit(2);
}

const store = await Store.open(stateDir);
const identity = await store.getIdentity();
const network = await store.getNetwork();
if (!identity || !network) throw new Error(`no identity or network in ${stateDir}`);
const key = privateKeyFromProtobuf(identity);
const extra: unknown[] = existsSync(extraFile) ? JSON.parse(readFileSync(extraFile, 'utf8')) as unknown[] : [];
const ledger = new Ledger(network);
const loaded = ledger.addAll(await store.allEnvelopes());
const loadedExtra = ledger.addAll(extra);
await store.close();

const signer = new Signer(key, ledger);
if (!ledger.isAdmin(signer.peerId)) throw new Error('the copied state is not that of an administrator (in its own view)');

// The new identity and its invite, signed by the old administrator as the next links of its chain.
const yKey = await generateKeyPair('Ed25519');
const y = peerIdFromPrivateKey(yKey).toString();
const wgKey = toBase64(staticKey(generatePrivateKey()).publicKey);
const name = mode === 'control' ? 'yankee' : 'zulu';
const { envelope: invite, secret } = await signer.issueInvite({ ttlMs: 60 * 60 * 1000, uses: 1 }, at);
const inviteId = eventId(invite);
const admit = await signer.sign({
  type: 'admit', member: y, name, invite: inviteId,
  proof: inviteProof(secret, { network: network.id, invite: inviteId, member: y }),
}, at);
const rec = await record(yKey, { network, wgPublicKey: wgKey, name, endpoints: [endpoint], multiaddrs: [], seq: 1 }, at);
const envelopes: SignedEnvelope[] = [invite, admit, rec];
writeFileSync(extraFile, JSON.stringify([...extra, ...envelopes]));

const describe = (env: SignedEnvelope) => {
  const b = env.body as { type: string; seq: number; prev?: string | null; deps?: string[]; at: number };
  return b.type === 'record'
    ? { type: b.type, id: eventId(env), at: b.at }
    : { type: b.type, id: eventId(env), seq: b.seq, prev: b.prev, deps: b.deps, at: b.at };
};

// Push as the new identity, with the network key.
const node = await createMeshNode({ privateKey: yKey, psk: network.psk, listen: ['/ip4/0.0.0.0/tcp/0'], gate: { allow: () => true } });
const pushed: { target: string; ok: boolean; detail: string }[] = [];
for (const target of targets) {
  try {
    const signal = AbortSignal.timeout(10_000);
    const stream = await node.dialProtocol(multiaddr(target), pushProtocol(network.id), { signal });
    const frames = new FrameStream(stream, 1024 * 1024);
    await frames.writeMany([...envelopes, { end: true }], signal);
    await frames.close();
    // The member reads up to our end frame, then closes its side: the end of the stream here. A
    // refusal ('peer is revoked', a bad frame) is an abort instead: a reset, not an end.
    let detail: string;
    let ok = false;
    try {
      const v = await frames.read(AbortSignal.timeout(5_000));
      detail = `unexpected frame ${JSON.stringify(v)}`;
    } catch (err) {
      detail = (err as Error).message;
      ok = /end of (input|stream)|ended|eof/i.test(detail) && !/reset|abort|timed out/i.test(detail);
    }
    pushed.push({ target, ok, detail });
  } catch (err) {
    pushed.push({ target, ok: false, detail: `push failed: ${(err as Error).message}` });
  }
}
await node.stop();

console.log(JSON.stringify({
  mode, signer: signer.peerId, y, wgKey, meshIp: ledger.addressOf(y), loaded, loadedExtra,
  signed: envelopes.map(describe), envelopes, pushed,
}));
process.exit(0);
