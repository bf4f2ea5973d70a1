// `logmta sendmail`: the sendmail-compatible injector (cron, scripts, PHP's mail()). Reads a
// message on stdin and hands it to the running daemon over the control socket (op "inject");
// the daemon queues it durably before answering, so exit 0 means the message is safe.
// Options as sendmail/Postfix take them: -t (recipients from To/Cc/Bcc, added to any given on
// the command line; Bcc removed), -f/-r SENDER, -F NAME, -i / -oi (a lone "." does not end the
// message), -v (print the queue id); other -o*, -B, -N, -U, -bm are accepted and ignored.
// A first line that is an mbox "From " separator (git format-patch files) is dropped, as
// Postfix's sendmail does. A message over smtp.max_message_size is refused here (65), and the
// input stops being read as soon as it is certain to be over (never held whole in memory).
// The queue commands scripts call sendmail for, as Postfix's sendmail does: -q (deliver all
// queued mail now: `logmta queue flush`, dead-host marks included), -qRSITE (the mail for SITE:
// `flush --domain SITE`), -q<interval> (accepted and ignored: there is no queue-run daemon
// mode), -bp (list the queue, as mailq: `logmta queue list`).
// Exit codes (sysexits): 0 queued; 64 usage or no recipients; 65 bad address or message; 67 a
// recipient refused (unknown local user); 69 refused for another permanent reason; 75 try
// again later (daemon not running, queue unavailable); 77 no permission on the socket; 78 bad
// configuration. A recipient without a domain ("root", cron's MAILTO) and the default sender
// (user@) get the first local domain (else the hostname), as sendmail uses $myorigin.
import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import {
  completeMessage,
  dropMboxFrom,
  normalizeInput,
  parseAddressList,
  parseMessage,
  recipientsFromHeaders,
} from '../admin/message.js';
import { InputMeter } from '../admin/input-meter.js';
import { ConfigError } from '../config/index.js';
import { MtaError } from '../errors.js';
import { rfc5322Date } from '../smtp/protocol/date.js';
import { describeError, findDaemon, withDaemon } from './client.js';
import type { Io } from './main.js';
import { run as runQueue } from './queue.js';

interface Opts {
  /** What was asked for: send a message (the default), or a queue command (-q, -qR, -bp). */
  mode: 'send' | 'flush' | 'list' | 'none';
  /** -qRSITE: the site (domain) to flush. */
  site?: string;
  extract: boolean;
  ignoreDots: boolean;
  sender: string | undefined;
  fullName: string | undefined;
  verbose: boolean;
  recipients: string[];
  config?: string;
  dataDir?: string;
  socket?: string;
}

class UsageError extends Error {}
/** A recipient argument that holds no address: sysexits 65 (EX_DATAERR), as a malformed address. */
class BadAddressError extends Error {}

/** sendmail's command line: single-letter flags, values attached (-fme) or separate (-f me). */
export function parseSendmailArgs(argv: readonly string[]): Opts {
  const o: Opts = {
    mode: 'send',
    extract: false,
    ignoreDots: false,
    sender: undefined,
    fullName: undefined,
    verbose: false,
    recipients: [],
  };
  let i = 0;
  const value = (flag: string, a: string): string => {
    if (a.length > 2) return a.slice(2);
    const v = argv[++i];
    if (v === undefined) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a === '--config' || a === '--data-dir' || a === '--socket') {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      if (a === '--config') o.config = v;
      else if (a === '--data-dir') o.dataDir = v;
      else o.socket = v;
      continue;
    }
    if (!a.startsWith('-') || a === '-') break;
    const f = a[1];
    switch (f) {
      case 't':
        o.extract = true;
        break;
      case 'i':
        o.ignoreDots = true;
        break;
      case 'v':
        o.verbose = true;
        break;
      case 'f':
      case 'r':
        o.sender = value(`-${f}`, a);
        break;
      case 'F':
        o.fullName = value('-F', a);
        break;
      case 'o':
        if (a === '-oi' || a === '-oitrue') o.ignoreDots = true;
        else if (a === '-o') i++; // "-o option" form
        break;
      case 'B':
      case 'N':
      case 'R':
      case 'V':
        value(`-${f}`, a); // DSN and body-type options: accepted, not used
        break;
      case 'U':
      case 'm':
      case 'n':
        break;
      case 'b':
        if (a === '-bp') o.mode = 'list';
        else if (a !== '-bm')
          throw new UsageError(`${a}: only -bm (deliver mail) and -bp (list the queue) are supported`);
        break;
      case 'q':
        if (a === '-q') o.mode = 'flush';
        else if (a.startsWith('-qR')) {
          o.mode = 'flush';
          o.site = value('-qR', a.slice(1)).toLowerCase();
        } else if (/^-q\d+[smhdw]?$/.test(a)) o.mode = 'none';
        else throw new UsageError(`${a}: only -q, -qRSITE and -q<interval> are supported`);
        break;
      default:
        throw new UsageError(`unknown option ${a}`);
    }
  }
  if (o.mode !== 'send') {
    if (i < argv.length) throw new UsageError(`${argv[i]}: no recipients with -q or -bp`);
    return o;
  }
  for (; i < argv.length; i++) {
    const list = parseAddressList(argv[i]!, { bareNames: true });
    if (list.length === 0) throw new BadAddressError(`not an address: ${JSON.stringify(argv[i])}`);
    o.recipients.push(...list);
  }
  return o;
}

/** 65 (EX_DATAERR): the message is over smtp.max_message_size. */
function tooBig(max: number, stopped: boolean): MtaError {
  return new MtaError(
    'INJECT_TOO_BIG',
    'permanent',
    `message larger than ${max} bytes (smtp.max_message_size)${stopped ? '; stopped reading the input' : ''}`,
  );
}

/**
 * The input, read until its end — or only until it is certain to make a message over `max`
 * (InputMeter): then reading stops (the writer gets EPIPE) and INJECT_TOO_BIG is thrown, so a
 * runaway pipe costs at most the limit in memory. What follows a lone "." (without -i) is read
 * and dropped.
 */
async function readInput(input: NodeJS.ReadableStream, max: number, ignoreDots: boolean): Promise<Buffer> {
  const meter = new InputMeter(ignoreDots);
  const parts: Buffer[] = [];
  for await (const c of input) {
    if (meter.ended) continue;
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
    parts.push(b);
    meter.feed(b.toString('latin1'));
    // Leaving the loop destroys the stream: nothing more is read.
    if (meter.size > max) throw tooBig(max, true);
  }
  return Buffer.concat(parts);
}

/** sysexits for an injection failure. */
export function sendmailExitCode(e: unknown): number {
  if (e instanceof ConfigError) return 78;
  if (!(e instanceof MtaError)) return 75;
  switch (e.code) {
    case 'ADMIN_UNREACHABLE':
      return 75;
    case 'ADMIN_FORBIDDEN':
      return 77;
    case 'INJECT_NO_RECIPIENTS':
      return 64;
    case 'INJECT_BAD_SENDER':
    case 'INJECT_BAD_RECIPIENT':
    case 'INJECT_TOO_BIG':
      return 65;
    case 'INJECT_RECIPIENT_REFUSED':
      return e.kind === 'transient' ? 75 : 67;
  }
  return e.kind === 'transient' ? 75 : 69;
}

export async function run(argv: string[], io: Io): Promise<number> {
  let o: Opts;
  try {
    o = parseSendmailArgs(argv);
  } catch (e) {
    if (e instanceof BadAddressError) {
      io.stderr.write(`logmta sendmail: ${e.message}\n`);
      return 65;
    }
    io.stderr.write(
      `logmta sendmail: ${describeError(e)}\nusage: logmta sendmail [-t] [-i] [-f sender] [-F name] [recipient...] | -q | -qRsite | -bp\n`,
    );
    return 64;
  }
  if (o.mode === 'none') return 0;
  if (o.mode !== 'send') {
    // The queue commands, through `logmta queue` with the same way to the daemon.
    const where: string[] = [];
    if (o.config !== undefined) where.push('--config', o.config);
    if (o.dataDir !== undefined) where.push('--data-dir', o.dataDir);
    if (o.socket !== undefined) where.push('--socket', o.socket);
    const cmd =
      o.mode === 'list' ? ['list'] : o.site !== undefined ? ['flush', '--domain', o.site] : ['flush'];
    return runQueue([...cmd, ...where], io);
  }
  try {
    const target = findDaemon({ config: o.config, 'data-dir': o.dataDir, socket: o.socket });
    const host = target.config.hostname;
    const user = process.env.USER ?? process.env.LOGNAME ?? userInfo().username;
    const max = target.config.smtp.maxMessageSize;
    const raw = await readInput(io.stdin ?? process.stdin, max, o.ignoreDots);
    // latin1 keeps every byte as one char, so 8-bit mail passes through unchanged.
    const parsed = parseMessage(dropMboxFrom(normalizeInput(raw.toString('latin1'), o.ignoreDots)));
    // A user name without a domain ("root", as cron gives MAILTO), and the default sender, get
    // the first local domain, else the hostname, as sendmail and Postfix use $myorigin: so a
    // bounce of a cron mail comes back to a local mailbox.
    const origin = target.config.local[0]?.domain ?? host;
    const qualify = (a: string): string => (a.includes('@') ? a : `${a}@${origin}`);
    const recipients = o.recipients.map(qualify);
    if (o.extract) {
      const seen = new Set(recipients.map((r) => r.toLowerCase()));
      for (const r of recipientsFromHeaders(parsed.fields, { bareNames: true }).map(qualify)) {
        if (!seen.has(r.toLowerCase())) recipients.push(r);
        seen.add(r.toLowerCase());
      }
    }
    if (recipients.length === 0) {
      io.stderr.write(
        `logmta sendmail: no recipients${o.extract ? ' found in To/Cc/Bcc' : ' (give them as arguments, or -t)'}\n`,
      );
      return 64;
    }
    const sender = o.sender === undefined ? `${user}@${origin}` : o.sender.replace(/^<(.*)>$/, '$1');
    const now = Date.now();
    const message = completeMessage(parsed, {
      date: rfc5322Date(now),
      messageId: `<${now.toString(36)}.${randomBytes(6).toString('hex')}@${host}>`,
      from: sender === '' ? `${user}@${origin}` : sender,
      ...(o.fullName !== undefined ? { fullName: o.fullName } : {}),
      removeBcc: true,
    });
    // Checked here too, as the daemon checks it: a message far over the limit would otherwise
    // be refused as an over-long control request (exit 69), not as too large (65).
    if (message.length > max) throw tooBig(max, false);
    const r = await withDaemon(target, (c) =>
      c.request<{ id: string }>('inject', {
        sender,
        recipients,
        data: Buffer.from(message, 'latin1').toString('base64'),
        user,
      }),
    );
    if (o.verbose) io.stdout.write(`queued as ${r.id}\n`);
    return 0;
  } catch (e) {
    io.stderr.write(`logmta sendmail: ${describeError(e)}\n`);
    return sendmailExitCode(e);
  }
}
