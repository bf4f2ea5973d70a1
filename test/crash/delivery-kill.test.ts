// Crash test during delivery: a child-process daemon (`node bin/logmta.js serve --config F`)
// relays N messages to a slow SmtpSink; it is SIGKILLed at random moments while delivering
// (at least 10 times), restarted each time (start-up is recovery), and at the end every message
// must have reached the sink. Duplicates are allowed only for messages in flight at a kill — the
// sink answered 250 but the Delta was not yet durable — so their number is bounded by kills ×
// connections × 2 (one being sent plus one awaiting its commit per connection). The count is printed.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SmtpClient } from '../../src/smtp/client/index.js';
import { SmtpSink } from '../support/sink.js';
import { sendMail } from '../support/inject.js';
import { sleep, waitFor } from '../support/wait.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bin = path.join(root, 'bin', 'logmta.js');
const N = 300;
const CONNECTIONS = 4;
const MIN_KILLS = 10;

let child: ChildProcess | undefined;
const dirs: string[] = [];
let sink: SmtpSink | undefined;

after(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await sink?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Starts the daemon and resolves with its SMTP port once it listens. */
function startChild(config: string): Promise<{ proc: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [bin, 'serve', '--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = proc;
    let err = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`daemon did not start: ${err}`));
    }, 15000);
    proc.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      const m = /SMTP on 127\.0\.0\.1:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, port: Number(m[1]) });
      }
    });
    proc.on('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited (${code ?? sig}) before listening: ${err}`));
    });
  });
}

function kill(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
}

test('SIGKILL at random moments during delivery loses nothing; only in-flight messages repeat', {
  timeout: 55000,
}, async () => {
  sink = await SmtpSink.start({ delayMs: 6 });
  const s = sink;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-kill-'));
  dirs.push(dir);
  const config = path.join(dir, 'logmta.toml');
  writeFileSync(
    config,
    `hostname = "relay.test"\ndata_dir = "data"\nlocal = []\n` +
      `[smtp]\nlisten = ["127.0.0.1:0"]\nrelay_networks = ["127.0.0.0/8"]\n` +
      // The sessions on the main thread: the thread's start-up would let an incarnation deliver
      // more before the kill is timed, and this test is of delivery.
      `session_thread = false\n` +
      `[queue]\nretry = ["1s"]\n[delivery]\nconcurrency_per_destination = ${CONNECTIONS}\n` +
      `[log]\nlevel = "warn"\n` +
      `[[route]]\ndomain = "*"\nhost = "127.0.0.1:${s.port}"\n`,
  );
  const unique = () => new Set(s.transactions.flatMap((t) => t.recipients)).size;

  // Inject everything first: each 250 means durable, so the kills only hit delivery.
  let { proc, port } = await startChild(config);
  const c = await SmtpClient.connect('127.0.0.1', port, { name: 'injector.test', tls: { mode: 'none' } });
  for (let i = 0; i < N; i++)
    await sendMail(
      port,
      { from: 'a@src.test', to: [`m${i}@dst.test`], body: `${'x'.repeat(900)}\r\n`.repeat(3) },
      c,
    );
  await c.quit();

  let kills = 0;
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  while (kills < MIN_KILLS && unique() < N) {
    // Wait until this incarnation has delivered a random few (1 to 4), then kill it a random
    // moment later: counted in transactions, not milliseconds, so a loaded machine (a slow
    // test, a fast daemon) cannot deliver everything before the tenth kill.
    const at = s.transactions.length + 1 + Math.floor(random() * 4);
    await waitFor(() => s.transactions.length >= at || unique() >= N, 'delivery to resume', 15000);
    await sleep(Math.floor(random() * 5));
    await kill(proc);
    kills++;
    ({ proc } = await startChild(config));
  }
  await waitFor(() => unique() >= N, `all ${N} messages at the sink (have ${unique()})`, 30000);
  await sleep(300); // anything still in flight would show up as an extra transaction
  await kill(proc);

  const delivered = s.transactions.flatMap((t) => t.recipients);
  const duplicates = delivered.length - new Set(delivered).size;
  const missing = Array.from({ length: N }, (_, i) => `m${i}@dst.test`).filter((r) => !delivered.includes(r));
  console.log(
    `# delivery-kill: ${N} messages, ${kills} SIGKILLs, ${s.connections} connections, ${duplicates} duplicates`,
  );
  assert.deepEqual(missing, []);
  assert.ok(kills >= MIN_KILLS, `only ${kills} kills before everything was delivered`);
  assert.ok(duplicates <= kills * CONNECTIONS * 2, `${duplicates} duplicates for ${kills} kills`);
  // Every copy is complete: the sink only records transactions it answered 250 (or took whole).
  for (const t of s.transactions) assert.match(t.data.toString(), /(x{900}\r\n){3}$/);
});
