// The worker thread of log/frame-check.ts: given a segment file's bytes (transferred, not
// copied), answers how far its frames are whole with matching CRCs (record/frame.ts
// checkedPrefix) and hands the bytes back the same way. Pure computation; no file access.
import { parentPort } from 'node:worker_threads';
import { checkedPrefix } from '../record/frame.js';

export interface CheckRequest {
  id: number;
  memory: ArrayBuffer;
  offset: number;
  length: number;
}

export interface CheckAnswer {
  id: number;
  memory: ArrayBuffer;
  checkedTo: number;
}

const port = parentPort;
if (port !== null) {
  port.on('message', (m: CheckRequest) => {
    const checkedTo = checkedPrefix(Buffer.from(m.memory, m.offset, m.length));
    const answer: CheckAnswer = { id: m.id, memory: m.memory, checkedTo };
    port.postMessage(answer, [m.memory]);
  });
}
