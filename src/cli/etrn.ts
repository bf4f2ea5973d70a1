// `logmta etrn HOST[:PORT] DOMAIN...`: the client side of ETRN (RFC 1985), for operators and
// tests. Connects (STARTTLS when offered, unverified, unless --no-tls; --require-tls to insist),
// sends EHLO, then one ETRN per domain — one at a time, since ETRN ends a pipelining group —
// printing every reply; then QUIT. Unlike fetchmail it does not stop at the first 251.
// A DOMAIN may be "@domain" (the domain and its subdomains) or "#queue", passed as given.
// Exit codes: 0 every ETRN got 2xx; 75 the worst reply was 4xx, or the server could not be
// reached / the session failed; 69 some ETRN got 5xx; 64 usage.
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { parseHostPort } from '../config/index.js';
import { SmtpClient, SmtpClientError } from '../smtp/client/index.js';
import { describeReply } from '../smtp/protocol/reply.js';
import type { Io } from './main.js';

const USAGE =
  'usage: logmta etrn [--name EHLO-NAME] [--no-tls | --require-tls] [--timeout SECONDS] HOST[:PORT] DOMAIN...\n';

export async function run(argv: string[], io: Io): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    io.stderr.write(`logmta etrn: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 64;
  }
  const [server, ...domains] = args.positionals;
  if (server === undefined || domains.length === 0) {
    io.stderr.write(USAGE);
    return 64;
  }
  let hp: { host: string; port: number };
  try {
    hp = parseHostPort(server, { defaultPort: 25 });
  } catch (e) {
    io.stderr.write(`logmta etrn: ${e instanceof Error ? e.message : String(e)}\n`);
    return 64;
  }
  for (const d of domains) {
    if (!/^[@#]?[^\s@#]+$/.test(d)) {
      io.stderr.write(`logmta etrn: not a domain: ${JSON.stringify(d)}\n`);
      return 64;
    }
  }
  const seconds = Number(args.values.timeout ?? '60');
  if (!Number.isFinite(seconds) || seconds <= 0) {
    io.stderr.write(`logmta etrn: --timeout: a number of seconds\n`);
    return 64;
  }
  const ms = seconds * 1000;
  let client: SmtpClient;
  try {
    client = await SmtpClient.connect(hp.host, hp.port, {
      name: args.values.name ?? hostname(),
      tls: {
        mode: args.values['no-tls'] ? 'none' : args.values['require-tls'] ? 'required' : 'opportunistic',
      },
      timeouts: { connect: ms, greeting: ms, command: ms, quit: 5_000 },
    });
  } catch (e) {
    const reply = e instanceof SmtpClientError && e.reply ? ` (${describeReply(e.reply)})` : '';
    io.stderr.write(`logmta etrn: ${e instanceof Error ? e.message : String(e)}${reply}\n`);
    return 75;
  }
  if (!client.extensions.keywords.has('ETRN'))
    io.stderr.write(`logmta etrn: note: ${server} does not advertise ETRN; trying anyway\n`);
  let worst = 2;
  try {
    for (const d of domains) {
      const r = await client.connection.send(`ETRN ${d}\r\n`, ms, 'ETRN reply');
      for (const [i, line] of r.lines.entries())
        io.stdout.write(`${r.code}${i === r.lines.length - 1 ? ' ' : '-'}${line}\n`);
      worst = Math.max(worst, Math.floor(r.code / 100));
    }
  } catch (e) {
    io.stderr.write(`logmta etrn: ${e instanceof Error ? e.message : String(e)}\n`);
    client.close();
    return 75;
  }
  await client.quit();
  return worst >= 5 ? 69 : worst === 4 ? 75 : 0;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      'no-tls': { type: 'boolean' },
      'require-tls': { type: 'boolean' },
      timeout: { type: 'string' },
    },
    allowPositionals: true,
  });
}
