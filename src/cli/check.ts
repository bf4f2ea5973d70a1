// `logmta check [--config FILE]`: validates a configuration without starting anything, as
// `postfix check` or `nginx -t` — before a reload (SIGHUP) or a start. Reads the file as serve
// would (every key, the files it names: passwords, DKIM keys, the TLS certificate and that the
// key is its own), then prints what the daemon would run: listeners, data directory, what mail
// it takes and where it sends it, and the notices a public MTA should heed (config/checks.ts).
// Exit codes: 0 valid, 78 invalid (every problem printed), 64 usage.
import { parseArgs } from 'node:util';
import {
  type Config,
  ConfigError,
  configNotices,
  formatDuration,
  formatHostPort,
  type HostPort,
  loadConfig,
  type WindowRate,
} from '../config/index.js';
import { describeDane } from '../delivery/dane/trust.js';
import { errorText } from '../errors.js';
import type { Io } from './main.js';

function hp(list: readonly HostPort[]): string {
  return list.length === 0 ? '(none)' : list.map(formatHostPort).join(', ');
}

function accessLine(c: Config): string {
  if (c.access.length === 0) return '(no rules)';
  const n = (on: string) => c.access.filter((r) => r.on === on).length;
  return `${c.access.length} rule(s): client ${n('client')}, sender ${n('sender')}, recipient ${n('recipient')}`;
}

function ratesLine(c: Config): string {
  const s = c.smtp;
  const one = (what: string, r: WindowRate | undefined) =>
    r === undefined ? [] : [`${what} ${r.count}/${formatDuration(r.periodMs)}`];
  const all = [
    ...one('connections', s.clientConnectionRate),
    ...one('messages', s.clientMessageRate),
    ...one('recipients', s.clientRecipientRate),
  ];
  if (all.length === 0) return 'off';
  const where = c.cluster ? '; counted over the cluster' : '';
  return `${all.join(', ')}; ${s.clientRateExceptions.length} exception block(s)${where}`;
}

/** What the daemon would run with `c`, one line per part. */
export function describeConfig(c: Config): string[] {
  const lines = [
    `hostname      ${c.hostname}`,
    `data          ${c.dataDir}`,
    `smtp          ${hp(c.smtp.listen)}; submission ${hp(c.smtp.submission)}; submissions ${hp(c.smtp.submissions)}`,
    `tls           ${c.tls ? `${c.tls.certFile} (${c.tls.minVersion} and up)` : 'off (no STARTTLS)'}`,
    `local         ${c.local.map((l) => l.domain).join(', ') || '(none)'}`,
    `relay         networks ${c.smtp.relayNetworks.length}, domains ${c.smtp.relayDomains.join(', ') || '(none)'}, AUTH users ${c.users.length}`,
    `routes        ${c.routes.map((r) => `${r.domain} → ${r.hosts.length === 0 ? 'MX' : hp(r.hosts)}`).join('; ') || '(none: MX lookups)'}`,
    `outbound tls  MTA-STS ${c.delivery.mtaSts ? 'on' : 'off'}; certificates checked against ${c.delivery.tlsCa?.file ?? 'the system CA store'}`,
    `dane          ${describeDane(c)}`,
    `etrn          ${c.etrn.map((e) => e.domain).join(', ') || '(none)'}`,
    `odmr          ${c.odmr.accounts.length} account(s) on ${hp(c.odmr.listen)}`,
    `dkim          ${c.dkim.map((k) => `${k.selector}._domainkey.${k.domain}`).join(', ') || '(none)'}`,
    `cluster       ${c.cluster ? `node ${c.cluster.node}` : 'off (a single node)'}`,
    `access        ${accessLine(c)}`,
    `client rates  ${ratesLine(c)}`,
  ];
  return lines;
}

export async function run(argv: string[], io: Io): Promise<number> {
  let values: { config?: string | undefined };
  try {
    values = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' } } }).values;
  } catch (e) {
    io.stderr.write(`logmta check: ${errorText(e)}\nusage: logmta check [--config FILE]\n`);
    return 64;
  }
  let c: Config;
  try {
    // Loading checks every key and the files named (the TLS key against its certificate too).
    c = loadConfig(values.config !== undefined ? { file: values.config } : {});
  } catch (e) {
    if (e instanceof ConfigError) {
      io.stderr.write(`logmta: invalid configuration:\n  ${e.problems.join('\n  ')}\n`);
      return 78;
    }
    throw e;
  }
  io.stdout.write(
    `${values.config ?? '(built-in defaults)'}: valid\n${describeConfig(c)
      .map((l) => `  ${l}`)
      .join('\n')}\n`,
  );
  for (const n of configNotices(c)) io.stdout.write(`notice: ${n}\n`);
  return 0;
}
