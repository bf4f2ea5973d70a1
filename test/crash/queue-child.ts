// Child process of the kill test (queue-kill.test.ts): opens the queue in the directory given
// as argv[2] with the real file system (recovery runs first), then 32 concurrent producers
// accept messages forever, printing "ack <id>" the moment accept() resolves; one message in
// five is then moved to the hold lane (a two-phase move) and "held <id>" printed. The parent
// kills it with SIGKILL at random moments. Message content and recipients are a function of
// the id, so the parent can check every byte after recovery.
import { NodeQueueFs } from '../../src/queue/log/fs.js';
import { Queue } from '../../src/queue/queue.js';
import type { Destination } from '../../src/queue/types.js';
import { expectedData, expectedRecipients } from './queue-content.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: queue-child <dir>');
const q = await Queue.open({ dir, fs: new NodeQueueFs(), segmentSize: 64 * 1024 });
const r = q.recovery!;
process.stdout.write(
  `recovered ${JSON.stringify({ corruptions: r.corruptions, missing: r.missingSegments, live: r.liveMessages })}\n`,
);

async function producer(): Promise<void> {
  for (;;) {
    const id = q.ids.next();
    const recipients = expectedRecipients(id).map((address) => ({ address }));
    const destinations: Destination[] = recipients.map((x) =>
      x.address.endsWith('@held.test') ? { kind: 'held', domain: 'held.test' } : { kind: 'new' },
    );
    await q.accept({ data: [expectedData(id)], sender: 'kill@x.test', recipients, destinations, msgId: id });
    process.stdout.write(`ack ${id}\n`);
    if (id % 5 === 0) {
      await q.hold(id);
      process.stdout.write(`held ${id}\n`);
    }
  }
}

for (let i = 0; i < 32; i++)
  producer().catch((e) => {
    process.stderr.write(`producer failed: ${String(e)}\n`);
    process.exit(2);
  });
