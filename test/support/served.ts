// One `logmta serve` child per test suite, for socket tests that talk to it as clients do: call
// serveSuite() inside a describe() and it starts the daemon before the suite's tests (in a fresh
// temp dir, known at once so the TOML may name paths in it) and, after them, closes every client
// it opened, stops the daemon and removes the dir.
// Invariant: `daemon` is set before any test of the suite runs; every chat() is closed after.
// Fails: a start-up failure fails the suite's before hook with the daemon's stderr.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before } from 'node:test';
import { makeTempDir, SmtpChat, type SpawnedDaemon, spawnDaemon } from './daemon.js';

export interface ServedSuite {
  /** The temp dir (config, data/) of the daemon. */
  readonly dir: string;
  /** The running daemon (set by the suite's before hook). */
  readonly daemon: SpawnedDaemon;
  /** A new client connection that has read a 220 greeting. */
  chat(): Promise<SmtpChat>;
  /** The connections chat() opened so far. */
  readonly chats: readonly SmtpChat[];
}

/**
 * Registers before/after hooks in the current describe() for a daemon running `toml`, with
 * `files` (e.g. tlsFiles() for TLS_TOML) written into its dir first.
 */
export function serveSuite(
  prefix: string,
  toml: string | ((dir: string) => string),
  files?: () => Promise<Record<string, string>>,
): ServedSuite {
  const dir = makeTempDir(prefix);
  const chats: SmtpChat[] = [];
  let daemon: SpawnedDaemon | undefined;
  before(async () => {
    const text = typeof toml === 'string' ? toml : toml(dir);
    daemon = await spawnDaemon({ dir, toml: text, ...(files && { files: await files() }) });
  });
  after(async () => {
    for (const c of chats) c.close();
    await daemon?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    chats,
    get daemon(): SpawnedDaemon {
      assert.ok(daemon, 'the daemon is started by the suite');
      return daemon;
    },
    async chat() {
      const { chat, greeting } = await SmtpChat.open(this.daemon.port);
      chats.push(chat);
      assert.match(greeting, /^220 /);
      return chat;
    },
  };
}
