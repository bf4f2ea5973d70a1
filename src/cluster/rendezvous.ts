// Rendezvous (highest random weight) hashing: the node a key lands on, among a set of nodes, is
// the one whose hash with the key is highest. Every node computes the same answer from the same
// set, and removing a node moves only the keys that were on it. Used to choose a first home for
// a domain (which is then stored, so later membership changes do not move it) and to spread a
// drained node's mail over the others.
// Pure; never throws (an empty set gives undefined).

import { createHash } from 'node:crypto';

function weight(node: string, key: string): bigint {
  return createHash('sha256').update(node).update('\0').update(key).digest().readBigUInt64BE(0);
}

/** The node `key` goes to among `nodes`; undefined when there are none. */
export function rendezvous(key: string, nodes: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestW = -1n;
  for (const n of nodes) {
    const w = weight(n, key);
    if (w > bestW || (w === bestW && best !== undefined && n < best)) {
      best = n;
      bestW = w;
    }
  }
  return best;
}
