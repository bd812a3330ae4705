// The Host compliance suite (helpers/host-suite.ts) on a real libp2p node (createMeshNode on
// loopback, as the p2p tests make them) and on the in-memory host (helpers/memory-host.ts).
import '../../src/util/polyfill.js';
import { randomBytes } from 'node:crypto';
import type { Host } from '../../src/discovery/host.js';
import { createMeshNode, type MeshNode } from '../../src/discovery/p2p.js';
import { hostCompliance } from './helpers/host-suite.js';
import { MemoryNetwork } from './helpers/memory-host.js';
import { LOOPBACK, PATIENT_MONITOR, newKey } from './helpers/mesh-fixture.js';

// A compile-time check too: a libp2p node is a Host as it is.
const asHost = (node: MeshNode): Host => node;

hostCompliance('libp2p', () => {
  const nodes: MeshNode[] = [];
  const psk = randomBytes(32).toString('hex');
  return {
    async pair() {
      const make = async () => {
        const node = await createMeshNode({ privateKey: await newKey(), psk, listen: LOOPBACK, gate: { allow: () => true }, connectionMonitor: PATIENT_MONITOR });
        nodes.push(node);
        return { host: asHost(node), addr: node.getMultiaddrs()[0].toString() };
      };
      return [await make(), await make()];
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
});

hostCompliance('memory', () => {
  const net = new MemoryNetwork();
  return {
    async pair() {
      const a = await net.host();
      const b = await net.host();
      return [{ host: a, addr: a.addrs[0] }, { host: b, addr: b.addrs[0] }];
    },
    stop: () => net.stop(),
  };
});
