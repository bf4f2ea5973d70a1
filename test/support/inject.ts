// Test helpers for delivery tests (integration, interop, crash): start an in-process logmta
// from a TOML fragment in a temp dir, inject mail with the real SMTP client, capture the queue's
// outcome log lines, and wait for conditions. Test-only; nothing in the daemon imports it.
// Invariant: every helper cleans up what it created (stop() removes the temp dir).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { configFromToml } from '../config/index.js';
import { type Daemon, type DaemonDeps, startDaemon } from '../daemon.js';
import type { LogFields, Logger } from '../log.js';
import { type OutboundRecipient, type SendResult, SmtpClient } from '../smtp/client/index.js';

export interface LogLine {
  level: string;
  msg: string;
  fields: LogFields;
}

/** A logger that keeps every line in memory. */
export function captureLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const at =
    (level: string) =>
    (fields: LogFields, msg: string): void => {
      lines.push({ level, msg, fields });
    };
  const self: Logger & { lines: LogLine[] } = {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: () => self,
    isLevelEnabled: () => true,
    flush() {},
  };
  return self;
}

export interface TestDaemon {
  daemon: Daemon;
  dir: string;
  /** Port of the first SMTP listener. */
  port: number;
  log: LogLine[];
  /** Outcome lines ("delivered", "deferred", "failed", "expired") for a recipient. */
  outcomes(rcpt?: string): LogLine[];
  /** Messages still in the queue (all queues). */
  liveMessages(): number;
  /** Nothing queued, and every accepted recipient's final outcome has been logged (outcomes are
   *  logged just after their commit, so an empty queue alone can run ahead of the log). */
  settled(): boolean;
  stop(): Promise<void>;
}

/**
 * Starts a daemon on 127.0.0.1:0 with data in a fresh temp dir. `toml` is appended after the
 * basics (hostname relay.test, relaying from loopback, no local domains unless it has [[local]]), so it may add
 * [queue], [[route]], [delivery] and so on.
 */
export async function startTestDaemon(toml: string, deps: Partial<DaemonDeps> = {}): Promise<TestDaemon> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-dlv-'));
  const local = /^\[\[local\]\]/m.test(toml) ? '' : 'local = []\n';
  const text = `hostname = "relay.test"\ndata_dir = ${JSON.stringify(dir)}\n${local}${withSmtp(toml)}`;
  const config = configFromToml(text, { baseDir: dir });
  const logger = captureLogger();
  let daemon: Daemon;
  try {
    daemon = await startDaemon(config, { logger, ...deps });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const port = Number(daemon.addresses.smtp[0]?.split(':').pop());
  let stopped = false;
  return {
    daemon,
    dir,
    port,
    log: logger.lines,
    outcomes: (rcpt) =>
      logger.lines.filter(
        (l) =>
          ['delivered', 'deferred', 'failed', 'expired'].includes(l.msg) &&
          (rcpt === undefined || l.fields.rcpt === rcpt),
      ),
    liveMessages: () => daemon.queues.list.reduce((n, q) => n + q.core.msgs.byId.size, 0),
    settled: () => {
      if (daemon.queues.list.some((q) => q.core.msgs.byId.size > 0)) return false;
      let accepted = 0;
      let finals = 0;
      for (const l of logger.lines) {
        if (l.msg === 'received' || l.msg === 'queued') accepted += Number(l.fields.recipients ?? 0);
        else if (l.msg === 'delivered' || l.msg === 'failed') finals++;
      }
      return finals >= accepted;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await daemon.stop(200);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Adds an [smtp] table listening on an ephemeral port unless the fragment has one. */
function withSmtp(toml: string): string {
  if (/^\[smtp\]/m.test(toml)) return toml;
  return `[smtp]\nlisten = ["127.0.0.1:0"]\nrelay_networks = ["127.0.0.0/8"]\n${toml}`;
}

export interface MailSpec {
  from: string;
  to: Array<string | OutboundRecipient>;
  subject?: string;
  body?: string;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
}

/** A small RFC 5322 message with CRLF line ends. */
export function makeMessage(spec: { from: string; to: string; subject?: string; body?: string }): Buffer {
  const body = spec.body ?? 'Hello.\r\n';
  return Buffer.from(
    `From: <${spec.from}>\r\nTo: <${spec.to}>\r\nSubject: ${spec.subject ?? 'test'}\r\n` +
      `Message-ID: <${Math.random().toString(36).slice(2)}@test>\r\n\r\n${body}`,
  );
}

/** Sends one message to 127.0.0.1:port with the real client; rejects unless every RCPT got 250. */
export async function sendMail(port: number, spec: MailSpec, client?: SmtpClient): Promise<SendResult> {
  const c =
    client ?? (await SmtpClient.connect('127.0.0.1', port, { name: 'injector.test', tls: { mode: 'none' } }));
  try {
    const recipients = spec.to.map((r) => (typeof r === 'string' ? { address: r } : r));
    const first = recipients[0]?.address ?? '';
    const data = makeMessage({
      from: spec.from,
      to: first,
      ...(spec.subject !== undefined && { subject: spec.subject }),
      ...(spec.body !== undefined && { body: spec.body }),
    });
    const tx: Parameters<SmtpClient['sendMessage']>[0] = {
      sender: spec.from,
      recipients,
      size: data.length,
      data: [data],
    };
    if (spec.ret) tx.ret = spec.ret;
    if (spec.envid !== undefined) tx.envid = spec.envid;
    const res = await c.sendMessage(tx);
    const bad = res.recipients.filter((r) => r.status !== 'delivered');
    if (bad.length > 0)
      throw new Error(`injection refused: ${bad.map((b) => `${b.code} ${b.text}`).join('; ')}`);
    return res;
  } finally {
    if (!client) await c.quit();
  }
}

/** Polls `cond` every 10 ms until it is true; fails with `what` after `ms`. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Parses the message/delivery-status part of a DSN into per-message and per-recipient fields.
 *  Accepts CRLF (as on the wire) or LF (as in a Maildir) line ends. */
export function parseDsn(data: Buffer): {
  contentType: string;
  message: Record<string, string>;
  recipients: Record<string, string>[];
  text: string;
} {
  const text = data.toString('utf8').replace(/\r\n/g, '\n');
  const ct = /^Content-Type:\s*([^\n]*(?:\n[ \t][^\n]*)*)/im.exec(text)?.[1] ?? '';
  const at = text.search(/Content-Type:\s*message\/(global-)?delivery-status/i);
  if (at < 0) return { contentType: ct, message: {}, recipients: [], text };
  const partStart = text.indexOf('\n\n', at) + 2;
  const partEnd = text.indexOf('\n--', partStart);
  const groups = text
    .slice(partStart, partEnd < 0 ? undefined : partEnd)
    .split(/\n\n/)
    .filter((g) => g.trim().length > 0)
    .map((g) => {
      const o: Record<string, string> = {};
      for (const line of g.replace(/\n[ \t]+/g, ' ').split('\n')) {
        const c = line.indexOf(':');
        if (c > 0) o[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
      return o;
    });
  return { contentType: ct, message: groups[0] ?? {}, recipients: groups.slice(1), text };
}
