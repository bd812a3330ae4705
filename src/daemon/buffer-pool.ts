// Node's Buffer pool, back to Node 20's size. Buffer.from() and Buffer.allocUnsafe() of less than
// half the pool are slices of one shared ArrayBuffer, and that ArrayBuffer lives as long as any of
// its slices does. A daemon keeps small buffers for as long as a member exists (endpoint
// addresses, path keys, libp2p's peer store entries), made at different times, so each pins a pool
// that is otherwise garbage. Node 22 made the pool 64 KB (it was 8 KB): a founder at 20 members on
// Node 24 held 42 such pools, 2.75 MB, most of its external memory's growth with the mesh (a heap
// snapshot: bench/README.md). 8 KB pools pin an eighth of that; allocations under 4 KB, none of
// them on the data path, take a new pool a little more often.
//
//   useSmallBufferPool()   once, at the daemon's start; pools made from then on are POOL_BYTES
export const POOL_BYTES = 8 * 1024;

export function useSmallBufferPool(): void {
  Buffer.poolSize = POOL_BYTES;
}
