// Cryptokey routing (paper section 2): the table that maps an inner IP address to the peer that
// may send from it and to which we send it. A path-compressed binary trie per address family, as
// in wireguard-go's allowedips.go; lookups read the address straight from the packet buffer and
// allocate nothing.
import { formatPrefix, maskAddr, type Prefix } from './prefix.js';

class Node<P> {
  peer: P | undefined;
  readonly child: [Node<P> | null, Node<P> | null] = [null, null];
  constructor(readonly key: Buffer, readonly cidr: number, peer: P | undefined) {
    this.peer = peer;
  }
}

const bitAt = (key: Uint8Array, at: number, bit: number): number => (key[at + (bit >> 3)] >> (7 - (bit & 7))) & 1;

/** Number of leading bits a and b (at offset bAt) share, up to `max`. */
function commonBits(a: Uint8Array, b: Uint8Array, bAt: number, max: number): number {
  let n = 0;
  for (let i = 0; n < max; i++) {
    const x = a[i] ^ b[bAt + i];
    if (x === 0) {
      n += 8;
      continue;
    }
    return Math.min(max, n + Math.clz32(x) - 24);
  }
  return max;
}

class Trie<P> {
  root: Node<P> | null = null;

  constructor(readonly bits: number) {}

  insert(key: Buffer, cidr: number, peer: P): void {
    this.root = this.insertAt(this.root, key, cidr, peer);
  }

  private insertAt(node: Node<P> | null, key: Buffer, cidr: number, peer: P): Node<P> {
    if (node === null) return new Node(key, cidr, peer);
    const c = commonBits(node.key, key, 0, Math.min(node.cidr, cidr));
    if (c === node.cidr) {
      if (cidr === node.cidr) {
        node.peer = peer;
        return node;
      }
      const b = bitAt(key, 0, node.cidr);
      node.child[b] = this.insertAt(node.child[b], key, cidr, peer);
      return node;
    }
    if (c === cidr) {
      // The new prefix contains this node.
      const n = new Node<P>(key, cidr, peer);
      n.child[bitAt(node.key, 0, cidr)] = node;
      return n;
    }
    // They diverge at bit c: a branch node holds both.
    const branch = new Node<P>(maskAddr(Buffer.from(key), c), c, undefined);
    branch.child[bitAt(node.key, 0, c)] = node;
    branch.child[bitAt(key, 0, c)] = new Node(key, cidr, peer);
    return branch;
  }

  remove(key: Buffer, cidr: number, peer: P): boolean {
    let removed = false;
    const walk = (node: Node<P> | null): Node<P> | null => {
      if (node === null) return null;
      if (commonBits(node.key, key, 0, Math.min(node.cidr, cidr)) < Math.min(node.cidr, cidr)) return node;
      if (node.cidr === cidr) {
        if (node.peer !== peer) return node;
        node.peer = undefined;
        removed = true;
      } else if (node.cidr < cidr) {
        const b = bitAt(key, 0, node.cidr);
        node.child[b] = walk(node.child[b]);
      } else {
        return node;
      }
      // Drop nodes that no longer carry a peer or a branch.
      if (node.peer !== undefined) return node;
      if (node.child[0] && node.child[1]) return node;
      return node.child[0] ?? node.child[1];
    };
    this.root = walk(this.root);
    return removed;
  }

  lookup(buf: Uint8Array, at: number): P | undefined {
    let node = this.root;
    let found: P | undefined;
    while (node !== null) {
      if (commonBits(node.key, buf, at, node.cidr) < node.cidr) break;
      if (node.peer !== undefined) found = node.peer;
      if (node.cidr === this.bits) break;
      node = node.child[bitAt(buf, at, node.cidr)];
    }
    return found;
  }
}

export class AllowedIps<P> {
  private readonly v4 = new Trie<P>(32);
  private readonly v6 = new Trie<P>(128);
  /** Prefixes per peer, for listing and removal without walking the tries. */
  private readonly byPeer = new Map<P, Map<string, Prefix>>();

  private trie(p: Prefix): Trie<P> {
    return p.addr.length === 4 ? this.v4 : this.v6;
  }

  /** Routes a prefix to a peer; a prefix belongs to one peer, so this moves it if needed. */
  insert(prefix: Prefix, peer: P): void {
    const key = maskAddr(Buffer.from(prefix.addr), prefix.bits);
    const text = formatPrefix({ addr: key, bits: prefix.bits });
    const previous = this.ownerOf(key, prefix.bits);
    if (previous !== undefined && previous !== peer) this.byPeer.get(previous)?.delete(text);
    this.trie(prefix).insert(key, prefix.bits, peer);
    let set = this.byPeer.get(peer);
    if (!set) this.byPeer.set(peer, (set = new Map()));
    set.set(text, { addr: key, bits: prefix.bits });
  }

  /** Removes a prefix if it belongs to this peer. */
  remove(prefix: Prefix, peer: P): void {
    const key = maskAddr(Buffer.from(prefix.addr), prefix.bits);
    if (this.trie(prefix).remove(key, prefix.bits, peer)) {
      this.byPeer.get(peer)?.delete(formatPrefix({ addr: key, bits: prefix.bits }));
    }
  }

  removeByPeer(peer: P): void {
    const set = this.byPeer.get(peer);
    if (!set) return;
    for (const p of set.values()) this.trie(p).remove(p.addr, p.bits, peer);
    this.byPeer.delete(peer);
  }

  prefixesOf(peer: P): Prefix[] {
    return [...(this.byPeer.get(peer)?.values() ?? [])];
  }

  /** The peer for the IPv4 address at buf[at..at+4]. */
  lookupV4(buf: Uint8Array, at: number): P | undefined {
    return this.v4.lookup(buf, at);
  }

  /** The peer for the IPv6 address at buf[at..at+16]. */
  lookupV6(buf: Uint8Array, at: number): P | undefined {
    return this.v6.lookup(buf, at);
  }

  lookup(addr: Uint8Array): P | undefined {
    return addr.length === 4 ? this.v4.lookup(addr, 0) : this.v6.lookup(addr, 0);
  }

  private ownerOf(key: Buffer, bits: number): P | undefined {
    for (const [peer, set] of this.byPeer) {
      if (set.has(formatPrefix({ addr: key, bits }))) return peer;
    }
    return undefined;
  }
}
