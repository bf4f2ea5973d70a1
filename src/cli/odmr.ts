// `logmta odmr`: one ODMR poll as a customer (RFC 2645). Starts this host's queue (no listeners),
// connects to the provider, authenticates with CRAM-MD5, sends ATRN and receives the mail into the
// queue with the usual rule (250 only once durable), then waits briefly for first delivery
// attempts and stops. Refuses to run beside a `serve` on the same data directory (the daemon's
// control-socket check); `serve` polls its [[odmr.provider]] entries by itself.
// Exit: 0 mail received or none waiting, 64 usage, 66 password file unreadable, 69 provider
// refused or unreachable, 75 temporary failure, 78 configuration.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, parseHostPort, sessionTimeouts } from '../config/index.js';
import { startDaemon } from '../daemon.js';
import { MtaError } from '../errors.js';
import { createLogger } from '../log.js';
import { collect } from '../odmr/index.js';
import { makeServerHooks } from '../policy/hooks.js';
import { Router } from '../delivery/router.js';
import type { Io } from './main.js';

const USAGE =
  'usage: logmta odmr --provider HOST[:PORT] --user USER --password-file FILE [--domains D1,D2]\n' +
  '                   [--config FILE] [--data-dir DIR] [--wait SECONDS]\n';

export async function run(argv: string[], io: Io): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    io.stderr.write(`logmta odmr: ${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    return 64;
  }
  const v = args.values;
  if (!v.provider || !v.user || !v['password-file']) {
    io.stderr.write(USAGE);
    return 64;
  }
  let provider: { host: string; port: number };
  try {
    provider = parseHostPort(v.provider, { defaultPort: 366 });
  } catch (e) {
    io.stderr.write(`logmta odmr: --provider: ${e instanceof Error ? e.message : String(e)}\n`);
    return 64;
  }
  let password: string;
  try {
    password = readFileSync(v['password-file'], 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    io.stderr.write(
      `logmta odmr: cannot read ${v['password-file']}: ${(e as NodeJS.ErrnoException).code ?? e}\n`,
    );
    return 66;
  }
  const domains = v.domains
    ? v.domains
        .split(',')
        .map((d) => d.trim().toLowerCase())
        .filter((d) => d !== '')
    : [];
  let config: ReturnType<typeof loadConfig>;
  try {
    const overrides: { dataDir?: string } = {};
    if (v['data-dir']) overrides.dataDir = v['data-dir'];
    config = loadConfig(v.config ? { file: v.config, overrides } : { overrides });
  } catch (e) {
    if (e instanceof ConfigError) {
      io.stderr.write(`logmta: invalid configuration:\n  ${e.problems.join('\n  ')}\n`);
      return 78;
    }
    throw e;
  }
  // This run only receives: no SMTP, ODMR or HTTP admin listeners, no pollers.
  config = {
    ...config,
    smtp: { ...config.smtp, listen: [], submission: [], submissions: [] },
    odmr: { ...config.odmr, listen: [], providers: [] },
    admin: { ...config.admin, listen: undefined },
  };
  const logger = createLogger({ format: config.log.format, level: config.log.level });
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  try {
    daemon = await startDaemon(config, { logger });
  } catch (e) {
    io.stderr.write(`logmta odmr: cannot start: ${e instanceof Error ? e.message : String(e)}\n`);
    return 75;
  }
  let code = 0;
  try {
    const hooks = makeServerHooks(config, new Router(config, daemon.resolver), daemon.queues, daemon.ids);
    const r = await collect({
      host: provider.host,
      port: provider.port,
      user: v.user,
      password,
      domains,
      session: {
        hostname: config.hostname,
        maxMessageSize: config.smtp.maxMessageSize,
        maxRecipients: config.smtp.maxRecipients,
        ...sessionTimeouts(config.smtp),
      },
      hooks,
      logger,
    });
    io.stdout.write(
      r.status === 'no-mail'
        ? `logmta odmr: ${v.provider}: no mail waiting\n`
        : `logmta odmr: ${v.provider}: received ${r.messages} message(s)\n`,
    );
    if (r.status === 'received' && r.complete === false) {
      // Safe (what we took is durable, the rest is still held there), but not done: say so and
      // let cron or the operator try again.
      io.stderr.write(
        `logmta odmr: ${v.provider}: the connection was lost before its QUIT; the rest stays held at the provider (run again)\n`,
      );
      code = 75;
    }
    // Give first delivery attempts a moment; whatever is still queued is durable and is
    // delivered by the next `serve`.
    if (r.messages > 0) await settle(daemon.queues, Number(v.wait ?? '10') * 1000);
  } catch (e) {
    io.stderr.write(`logmta odmr: ${v.provider}: ${e instanceof Error ? e.message : String(e)}\n`);
    code =
      e instanceof MtaError && e.kind === 'permanent'
        ? 69
        : e instanceof MtaError && /CONNECT/.test(e.code)
          ? 69
          : 75;
  } finally {
    await daemon.stop(2_000);
    logger.flush();
  }
  return code;
}

/** Waits until no message is in the new lanes (first attempts done) or the time is up. */
async function settle(queues: Awaited<ReturnType<typeof startDaemon>>['queues'], ms: number): Promise<void> {
  const end = Date.now() + ms;
  const busy = (): boolean => queues.laneDepths().some((l) => l.kind === 'new' && l.live > 0);
  while (busy() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      provider: { type: 'string' },
      user: { type: 'string' },
      'password-file': { type: 'string' },
      domains: { type: 'string' },
      config: { type: 'string', short: 'c' },
      'data-dir': { type: 'string' },
      wait: { type: 'string' },
    },
    allowPositionals: false,
  });
}
