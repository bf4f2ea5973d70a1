// Local delivery into a Maildir (https://cr.yp.to/proto/maildir.html): write tmp/<unique> with
// Return-Path: and Delivered-To: prepended, fsync it, link it into new/, fsync new/, unlink tmp.
// Invariants: a file appears in new/ only complete and durable (the fsync before the link, the
// directory fsync after it), so a crash leaves at most a stray tmp/ file, never a partial message;
// names are unique per the spec (time.M<usec>P<pid>Q<counter>.<host>). Line ends are converted to
// LF (the Maildir convention) unless asked otherwise. The data may be a stream (a large message
// read from the queue piece by piece): it is written as it comes, never held whole.
// Failures are MtaErrors: full disk or quota -> transient 452; permissions and I/O -> transient
// 451; a maildir path that is not a directory -> permanent 554.

import { constants as fsc } from 'node:fs';
import { link, mkdir, open, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MtaError } from '../errors.js';
import { type Clock, systemClock } from '../util/clock.js';

export interface MaildirTarget {
  maildirPath: string;
  /** Envelope sender; "" becomes "<>". */
  returnPath: string;
  deliveredTo: string;
}

export interface MaildirOptions {
  clock?: Clock;
  hostname?: string;
  pid?: number;
  /** 'lf' (default, the Maildir convention) or 'crlf' (store as received). */
  lineEnding?: 'lf' | 'crlf';
}

function fsCode(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : '';
}

export function mapFsError(e: unknown, where: string): MtaError {
  const code = fsCode(e);
  // The message reaches the sender's reports: the errno code, not the errno text with its path
  // (the full error stays as the cause, for the log).
  const msg = `maildir delivery failed (${where}): ${code || 'error'}`;
  if (code === 'EDQUOT')
    return new MtaError('MAILDIR_QUOTA', 'transient', msg, {
      smtp: { code: 452, enhanced: '4.2.2' },
      cause: e,
    });
  if (code === 'ENOSPC')
    return new MtaError('MAILDIR_FULL', 'transient', msg, {
      smtp: { code: 452, enhanced: '4.3.1' },
      cause: e,
    });
  if (code === 'ENOTDIR')
    return new MtaError('MAILDIR_NOT_DIR', 'permanent', msg, {
      smtp: { code: 554, enhanced: '5.2.0' },
      cause: e,
    });
  return new MtaError('MAILDIR_IO', 'transient', msg, { smtp: { code: 451, enhanced: '4.3.0' }, cause: e });
}

/** Converts CRLF to LF across chunk boundaries without copying runs between line ends. */
class CrlfToLf {
  private pendingCr = false;
  push(chunk: Buffer, out: Buffer[]): void {
    let start = 0;
    if (this.pendingCr) {
      this.pendingCr = false;
      if (chunk[0] !== 10) out.push(CR);
    }
    let i = chunk.indexOf(CRLF, start);
    while (i >= 0) {
      out.push(chunk.subarray(start, i));
      start = i + 1; // keep the LF
      i = chunk.indexOf(CRLF, start);
    }
    let end = chunk.length;
    if (end > start && chunk[end - 1] === 13) {
      this.pendingCr = true;
      end--;
    }
    if (end > start) out.push(chunk.subarray(start, end));
  }
  end(out: Buffer[]): void {
    if (this.pendingCr) out.push(CR);
    this.pendingCr = false;
  }
}
const CR = Buffer.from('\r');
const CRLF = Buffer.from('\r\n');

export class MaildirWriter {
  private readonly clock: Clock;
  private readonly host: string;
  private readonly pid: number;
  private readonly lf: boolean;
  private counter = 0;
  private readonly ready = new Set<string>();

  constructor(opts: MaildirOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    // The spec: "/" and ":" in the host name are written as \057 and \072.
    this.host = (opts.hostname ?? os.hostname()).replace(/\//g, '\\057').replace(/:/g, '\\072');
    this.pid = opts.pid ?? process.pid;
    this.lf = (opts.lineEnding ?? 'lf') === 'lf';
  }

  /** A new unique file name: <sec>.M<usec>P<pid>Q<counter>.<host>. The clock has millisecond
   *  resolution, so the microsecond field is ms*1000 plus the counter mod 1000; Q keeps it unique. */
  uniqueName(): string {
    const ms = this.clock.now();
    const sec = Math.floor(ms / 1000);
    const usec = String((ms % 1000) * 1000 + (this.counter % 1000));
    this.counter++;
    return `${sec}.M${usec}P${this.pid}Q${this.counter}.${this.host}`;
  }

  /** Delivers one message (buffers, or a stream of them); resolves to the path of the file in new/. */
  async deliver(data: readonly Buffer[] | AsyncIterable<Buffer>, target: MaildirTarget): Promise<string> {
    const dir = target.maildirPath;
    await this.ensure(dir);
    const name = this.uniqueName();
    const tmp = path.join(dir, 'tmp', name);
    const dest = path.join(dir, 'new', name);
    const header = Buffer.from(
      `Return-Path: <${oneLine(target.returnPath)}>\r\nDelivered-To: ${oneLine(target.deliveredTo)}\r\n`,
    );
    const conv = this.lf ? new CrlfToLf() : undefined;
    /** The file's form of some message bytes. */
    const convert = (bufs: readonly Buffer[], end: boolean): Buffer[] => {
      if (!conv) return bufs as Buffer[];
      const out: Buffer[] = [];
      for (const b of bufs) conv.push(b, out);
      if (end) conv.end(out);
      return out;
    };
    let created = false;
    try {
      const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600).catch((e) => {
        throw mapFsError(e, 'create tmp file');
      });
      created = true;
      try {
        const write = async (bufs: Buffer[]): Promise<void> => {
          if (bufs.length === 0) return;
          await fh.writev(bufs).catch((e) => {
            throw mapFsError(e, 'write');
          });
        };
        if (Array.isArray(data)) await write(convert([header, ...(data as readonly Buffer[])], true));
        else {
          await write(convert([header], false));
          for await (const b of data as AsyncIterable<Buffer>) await write(convert([b], false));
          await write(convert([], true));
        }
        // Durable before it becomes visible: a reader must never see a partial message.
        await fh.sync().catch((e) => {
          throw mapFsError(e, 'fsync');
        });
      } finally {
        await fh.close();
      }
      // link (not rename): fails with EEXIST instead of replacing a message, as the spec advises.
      await link(tmp, dest).catch((e) => {
        throw mapFsError(e, 'link into new/');
      });
      await unlink(tmp).catch(() => {});
      created = false;
      // The directory entry in new/ must be durable before we report success.
      await syncDir(path.join(dir, 'new'));
      return dest;
    } catch (e) {
      if (created) await unlink(tmp).catch(() => {});
      throw e instanceof MtaError ? e : mapFsError(e, 'deliver');
    }
  }

  /** Creates the maildir (mode 0700) on first delivery; a non-directory path is a permanent error. */
  private async ensure(dir: string): Promise<void> {
    if (this.ready.has(dir)) return;
    try {
      const st = await stat(dir).catch((e) => {
        if (fsCode(e) === 'ENOENT') return undefined;
        throw e;
      });
      if (st !== undefined && !st.isDirectory()) {
        throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
      }
      for (const sub of ['cur', 'new', 'tmp'])
        await mkdir(path.join(dir, sub), { recursive: true, mode: 0o700 });
    } catch (e) {
      throw mapFsError(e, 'prepare maildir');
    }
    this.ready.add(dir);
  }
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

async function syncDir(dir: string): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(dir, fsc.O_RDONLY);
    await fh.sync();
  } catch (e) {
    throw mapFsError(e, 'fsync new/');
  } finally {
    await fh?.close();
  }
}
