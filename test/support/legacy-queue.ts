// Test support for upgrades: rewrites a stopped queue directory's segments the way a logmta from
// before the envelope flag byte (c2600f6 and older) wrote them — every envelope's JSON right after
// its 32-byte prefix, no flag byte (docs/queue-format.md, record type 3) — with every other record
// copied byte for byte and each segment's frames (length, CRC) made again. So a test can start
// today's queue or daemon on a queue "written by the old version", holding whatever the test put
// in it through the real accept paths. Works on any QueueFs (memfs for unit tests, the real disk
// for scenarios). Never shipped.
// Invariant: the queue must not be open (no daemon, no Queue) while it runs.
// Fails: rejects on an I/O error or a corrupt segment (a torn tail is dropped, as recovery would).
import type { QueueFs } from '../../src/queue/log/fs.js';
import { NodeQueueFs } from '../../src/queue/log/fs.js';
import { scanSegment } from '../../src/queue/log/reader.js';
import { parseLaneName, parseSegmentName } from '../../src/queue/log/segment.js';
import { encodeFrame, FRAME_HEADER } from '../../src/queue/record/frame.js';
import { RT_ENVELOPE } from '../../src/queue/record/records.js';

/** Where an envelope's JSON (or its flag byte) starts: after msgId, piece, version, due, arrival, rcptCount. */
const ENV_PREFIX = 32;
/** The JSON's first byte: an envelope without a flag byte has it right after the prefix. */
const OPEN_BRACE = 0x7b;

/** An envelope body as the old encoder wrote it: the flag byte (if any) dropped. */
export function withoutFlagByte(body: Buffer): Buffer {
  if (body.length <= ENV_PREFIX || body[ENV_PREFIX] === OPEN_BRACE) return body;
  return Buffer.concat([body.subarray(0, ENV_PREFIX), body.subarray(ENV_PREFIX + 1)]);
}

/** Every segment file of the queue, lane by lane; `done(dir)` after each lane's. */
async function eachSegment(
  queueDir: string,
  fs: QueueFs,
  each: (path: string) => Promise<void>,
  done: (laneDir: string) => Promise<void> = async () => {},
): Promise<void> {
  for (const lane of await fs.readdir(`${queueDir}/lanes`)) {
    if (parseLaneName(lane) === undefined) continue;
    const dir = `${queueDir}/lanes/${lane}`;
    for (const name of await fs.readdir(dir))
      if (parseSegmentName(name) !== undefined) await each(`${dir}/${name}`);
    await done(dir);
  }
}

/**
 * Rewrites every segment under `queueDir/lanes` in the pre-flag format; resolves with the number
 * of envelopes that lost a flag byte.
 */
export async function rewriteAsPreFlag(queueDir: string, fs: QueueFs = new NodeQueueFs()): Promise<number> {
  let changed = 0;
  const rewrite = async (path: string): Promise<void> => {
    const buf = await fs.readFile(path);
    const out: Buffer[] = [];
    const scan = scanSegment(buf, true, (r) => {
      if (r.type !== RT_ENVELOPE) {
        out.push(buf.subarray(r.offset, r.offset + r.length));
        return;
      }
      const old = withoutFlagByte(r.body);
      if (old !== r.body) changed++;
      out.push(...encodeFrame(RT_ENVELOPE, [old]));
    });
    if (scan.corruption) throw new Error(`${path} is corrupt: ${scan.corruption.reason}`);
    if (scan.header === undefined) return; // an empty or header-less file: nothing to rewrite
    // The header frame as it is, then the records; a torn tail (recovery would cut it) is dropped.
    const bytes = Buffer.concat([buf.subarray(0, FRAME_HEADER + buf.readUInt32LE(0)), ...out]);
    const tmp = `${path}.pre-flag`;
    const f = await fs.create(tmp);
    await f.write([bytes], 0);
    await f.datasync();
    await f.close();
    await fs.rename(tmp, path);
  };
  await eachSegment(queueDir, fs, rewrite, (dir) => fs.syncDir(dir));
  return changed;
}

/** How many envelopes under `queueDir/lanes` have a flag byte (0 once rewriteAsPreFlag ran). */
export async function flaggedEnvelopes(queueDir: string, fs: QueueFs = new NodeQueueFs()): Promise<number> {
  let n = 0;
  await eachSegment(queueDir, fs, async (path) => {
    scanSegment(await fs.readFile(path), true, (r) => {
      if (r.type === RT_ENVELOPE && r.body[ENV_PREFIX] !== OPEN_BRACE) n++;
    });
  });
  return n;
}
