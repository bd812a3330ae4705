// Cryptokey routing (paper section 2): the table that maps an inner IP address to the peer that
// may send from it, and to which we send packets for it. One path-compressed binary trie per
// address family, as wireguard-go's allowedips.go: a node stands for a prefix, its children
// extend it by at least one bit, and a node without a peer exists only to join two subtrees.
//
// Keys are held as 32-bit words (int32, host bits cleared) so that the per-packet lookup is a few
// integer operations per trie level, reading the address straight from the packet buffer; the
// lookups allocate nothing. A prefix belongs to exactly one peer; each peer keeps the set of its
// nodes so listing and removing a peer's prefixes never walks the tries.
import type { Prefix } from './prefix.js';

/** The top `bits` bits of a 32-bit word set (bits clamped to 0..32), as an int32. */
function wordMask(bits: number): number {
  if (bits <= 0) return 0;
  return bits >= 32 ? -1 : -1 << (32 - bits); // a shift by 32 would be a shift by 0
}

class Node<P> {
  /** Owner of this prefix; undefined for a node that only joins two subtrees. */
  peer: P | undefined = undefined;
  /** Children: the prefix extended with a 0 bit and with a 1 bit at position `cidr`. */
  c0: Node<P> | null = null;
  c1: Node<P> | null = null;
  /** Parent; null at the root. */
  up: Node<P> | null = null;
  // The key words (host bits cleared) and the masks of the prefix, unrolled into fields so the
  // lookup reads them without indexing an array.
  readonly k0: number; readonly k1: number; readonly k2: number; readonly k3: number;
  readonly m0: number; readonly m1: number; readonly m2: number; readonly m3: number;

  constructor(key: Int32Array, readonly cidr: number, readonly v6: boolean) {
    this.m0 = wordMask(cidr);
    this.m1 = wordMask(cidr - 32);
    this.m2 = wordMask(cidr - 64);
    this.m3 = wordMask(cidr - 96);
    this.k0 = key[0] & this.m0;
    this.k1 = key[1] & this.m1;
    this.k2 = key[2] & this.m2;
    this.k3 = key[3] & this.m3;
  }

  word(i: number): number {
    return i === 0 ? this.k0 : i === 1 ? this.k1 : i === 2 ? this.k2 : this.k3;
  }

  /** Whether the address words `a` lie inside this prefix. */
  covers(a: Int32Array): boolean {
    return (((a[0] ^ this.k0) & this.m0) | ((a[1] ^ this.k1) & this.m1)
      | ((a[2] ^ this.k2) & this.m2) | ((a[3] ^ this.k3) & this.m3)) === 0;
  }

  child(bit: number): Node<P> | null {
    return bit === 0 ? this.c0 : this.c1;
  }

  setChild(bit: number, node: Node<P> | null): void {
    if (bit === 0) this.c0 = node;
    else this.c1 = node;
    if (node !== null) node.up = this;
  }

  toPrefix(): Prefix {
    const addr = Buffer.alloc(this.v6 ? 16 : 4);
    for (let i = 0; i < addr.length / 4; i++) addr.writeInt32BE(this.word(i), i * 4);
    return { addr, bits: this.cidr };
  }
}

/** Bit `pos` (0 = most significant) of the address words `a`. */
const bitOf = (a: Int32Array, pos: number): number => (a[pos >>> 5] >>> (31 - (pos & 31))) & 1;

/** Bit `pos` of a node's key. */
const keyBit = (n: Node<unknown>, pos: number): number => (n.word(pos >>> 5) >>> (31 - (pos & 31))) & 1;

/** Number of leading bits the node's key and `a` share, at most `max`. */
function commonBits(n: Node<unknown>, a: Int32Array, max: number): number {
  for (let i = 0; i < 4; i++) {
    const x = n.word(i) ^ a[i];
    if (x !== 0) return Math.min(max, i * 32 + Math.clz32(x));
  }
  return max;
}

class Trie<P> {
  root: Node<P> | null = null;

  constructor(readonly v6: boolean) {}

  /** The node of exactly this prefix, or null. */
  find(key: Int32Array, cidr: number): Node<P> | null {
    let node = this.root;
    while (node !== null && node.cidr <= cidr && node.covers(key)) {
      if (node.cidr === cidr) return node;
      node = node.child(bitOf(key, node.cidr));
    }
    return null;
  }

  /** The node of exactly this prefix, created (without a peer) if it is not in the trie yet. */
  place(key: Int32Array, cidr: number): Node<P> {
    // Walk down while the nodes are prefixes of the new one.
    let parent: Node<P> | null = null;
    let node = this.root;
    while (node !== null && node.cidr <= cidr && node.covers(key)) {
      if (node.cidr === cidr) return node;
      parent = node;
      node = node.child(bitOf(key, node.cidr));
    }
    const fresh = new Node<P>(key, cidr, this.v6);
    if (node === null) {
      this.replace(parent, null, fresh, key);
      return fresh;
    }
    // `node` holds the slot where the new prefix belongs but is not one of its prefixes: either
    // the new prefix contains it, or the two part ways at some bit and a joining node is needed.
    const common = commonBits(node, key, Math.min(cidr, node.cidr));
    if (common === cidr) {
      fresh.setChild(keyBit(node, cidr), node);
      this.replace(parent, node, fresh, key);
      return fresh;
    }
    const join = new Node<P>(key, common, this.v6);
    join.setChild(keyBit(node, common), node);
    join.setChild(bitOf(key, common), fresh);
    this.replace(parent, node, join, key);
    return fresh;
  }

  /**
   * Takes a node out after its peer was cleared, as wireguard-go's RemoveByPeer: a node with two
   * children stays to join them; otherwise its child (if any) takes its place, and a peerless
   * parent left with a single child is spliced out too.
   */
  unlink(node: Node<P>): void {
    if (node.c0 !== null && node.c1 !== null) return;
    const parent = node.up;
    const child = node.c0 ?? node.c1;
    this.splice(node, child);
    if (child !== null || parent === null || parent.peer !== undefined) return;
    this.splice(parent, parent.c0 ?? parent.c1);
  }

  /** Puts `repl` where `old` is (below `parent`, on the side `key` leads to). */
  private replace(parent: Node<P> | null, old: Node<P> | null, repl: Node<P>, key: Int32Array): void {
    if (parent === null) {
      this.root = repl;
      repl.up = null;
    } else {
      parent.setChild(old === null ? bitOf(key, parent.cidr) : keyBit(old, parent.cidr), repl);
    }
  }

  /** Puts `repl` (possibly nothing) in the slot of `old`, detaching `old`. */
  private splice(old: Node<P>, repl: Node<P> | null): void {
    const parent = old.up;
    if (parent === null) {
      this.root = repl;
      if (repl !== null) repl.up = null;
    } else if (parent.c0 === old) {
      parent.setChild(0, repl);
    } else {
      parent.setChild(1, repl);
    }
    old.up = old.c0 = old.c1 = null;
  }
}

/**
 * Peers are any values except undefined (undefined means "no peer" in the trie). Inserting and
 * removing take the lead's Prefix type; the lookups take raw bytes and never allocate.
 */
export class AllowedIps<P> {
  private readonly v4 = new Trie<P>(false);
  private readonly v6 = new Trie<P>(true);
  private readonly byPeer = new Map<P, Set<Node<P>>>();
  /** Scratch words: the key being inserted or removed, and the address of a v6 lookup. */
  private readonly key = new Int32Array(4);
  private readonly addr = new Int32Array(4);

  /** Routes a prefix (host bits ignored) to a peer; a prefix has one owner, so this moves it. */
  insert(prefix: Prefix, peer: P): void {
    const trie = this.load(prefix);
    const node = trie.place(this.key, prefix.bits);
    if (node.peer === peer) return;
    if (node.peer !== undefined) this.byPeer.get(node.peer)?.delete(node);
    node.peer = peer;
    let nodes = this.byPeer.get(peer);
    if (nodes === undefined) this.byPeer.set(peer, (nodes = new Set()));
    nodes.add(node);
  }

  /** Removes a prefix if (and only if) it belongs to this peer. */
  remove(prefix: Prefix, peer: P): void {
    const trie = this.load(prefix);
    const node = trie.find(this.key, prefix.bits);
    if (node === null || node.peer === undefined || node.peer !== peer) return;
    const nodes = this.byPeer.get(peer)!;
    nodes.delete(node);
    if (nodes.size === 0) this.byPeer.delete(peer);
    node.peer = undefined;
    trie.unlink(node);
  }

  removeByPeer(peer: P): void {
    const nodes = this.byPeer.get(peer);
    if (nodes === undefined) return;
    this.byPeer.delete(peer);
    for (const node of nodes) {
      node.peer = undefined;
      (node.v6 ? this.v6 : this.v4).unlink(node);
    }
  }

  /** The peer's prefixes, in the order they were given to it (fresh objects, safe to keep). */
  prefixesOf(peer: P): Prefix[] {
    const nodes = this.byPeer.get(peer);
    return nodes === undefined ? [] : [...nodes].map((n) => n.toPrefix());
  }

  /** The peer for the IPv4 address at buf[at..at+4]; undefined if none or out of bounds. */
  lookupV4(buf: Uint8Array, at: number): P | undefined {
    if (!(at >= 0 && at + 4 <= buf.length)) return undefined;
    const a = (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3];
    let found: P | undefined;
    let node = this.v4.root;
    while (node !== null) {
      if (((a ^ node.k0) & node.m0) !== 0) break; // left the prefix: nothing longer matches
      if (node.peer !== undefined) found = node.peer;
      if (node.cidr === 32) break;
      node = ((a >>> (31 - node.cidr)) & 1) === 0 ? node.c0 : node.c1;
    }
    return found;
  }

  /** The peer for the IPv6 address at buf[at..at+16]; undefined if none or out of bounds. */
  lookupV6(buf: Uint8Array, at: number): P | undefined {
    if (!(at >= 0 && at + 16 <= buf.length)) return undefined;
    const a = this.addr;
    for (let i = 0; i < 4; i++) {
      const p = at + i * 4;
      a[i] = (buf[p] << 24) | (buf[p + 1] << 16) | (buf[p + 2] << 8) | buf[p + 3];
    }
    let found: P | undefined;
    let node = this.v6.root;
    while (node !== null) {
      if (!node.covers(a)) break;
      if (node.peer !== undefined) found = node.peer;
      if (node.cidr === 128) break;
      node = bitOf(a, node.cidr) === 0 ? node.c0 : node.c1;
    }
    return found;
  }

  /** The peer for a 4-byte (IPv4) or 16-byte (IPv6) address; undefined for other lengths. */
  lookup(addr: Uint8Array): P | undefined {
    if (addr.length === 4) return this.lookupV4(addr, 0);
    if (addr.length === 16) return this.lookupV6(addr, 0);
    return undefined;
  }

  /** Checks a prefix, loads its masked words into this.key and returns its family's trie. */
  private load(prefix: Prefix): Trie<P> {
    const len = prefix.addr.length;
    if (len !== 4 && len !== 16) throw new RangeError(`allowed IP: address of ${len} bytes`);
    const bits = prefix.bits;
    if (!Number.isInteger(bits) || bits < 0 || bits > len * 8) throw new RangeError(`allowed IP: prefix length ${bits}`);
    const key = this.key;
    key.fill(0);
    for (let i = 0; i < len / 4; i++) key[i] = prefix.addr.readInt32BE(i * 4) & wordMask(bits - i * 32);
    return len === 4 ? this.v4 : this.v6;
  }
}
