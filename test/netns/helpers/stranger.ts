// A libp2p node that is not a member: `node stranger.js <psk hex> <multiaddr>` dials a member
// with the given pnet key and prints one JSON line, { connected, pingMs?, error? }: whether a
// libp2p connection opened and carried a ping. Run inside a test namespace (mesh.test.ts).
import '../../../src/util/polyfill.js';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { multiaddr } from '@multiformats/multiaddr';
import { createMeshNode } from '../../../src/discovery/p2p.js';

const [psk, target] = process.argv.slice(2);
const node = await createMeshNode({ privateKey: await generateKeyPair('Ed25519'), psk, listen: ['/ip4/0.0.0.0/tcp/0'], gate: { allow: () => true } });
let result: { connected: boolean; pingMs?: number; error?: string };
try {
  const conn = await node.dial(multiaddr(target), { signal: AbortSignal.timeout(5_000) });
  const pingMs = await node.services.ping.ping(conn.remotePeer, { signal: AbortSignal.timeout(5_000) });
  result = { connected: true, pingMs };
} catch (err) {
  result = { connected: false, error: (err as Error).message };
}
console.log(JSON.stringify(result));
await node.stop();
process.exit(0);
