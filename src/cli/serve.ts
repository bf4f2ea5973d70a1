// `logmta serve`: load the configuration (or the built-in defaults), start the daemon, print
// where it listens and where its data is, and stop on SIGTERM/SIGINT. Crash-only: stopping
// saves nothing, because the next start recovers from the log.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/index.js';
import { startDaemon } from '../daemon.js';
import { errorText } from '../errors.js';
import { createLogger } from '../log.js';
import type { Io } from './main.js';

export async function run(argv: string[], io: Io): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    io.stderr.write(`logmta serve: ${e instanceof Error ? e.message : String(e)}\n`);
    return 64;
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    const overrides: { listen?: string[]; dataDir?: string } = {};
    if (args.values.listen) overrides.listen = args.values.listen;
    if (args.values['data-dir']) overrides.dataDir = args.values['data-dir'];
    config = loadConfig(args.values.config ? { file: args.values.config, overrides } : { overrides });
  } catch (e) {
    if (e instanceof ConfigError) {
      io.stderr.write(`logmta: invalid configuration:\n  ${e.problems.join('\n  ')}\n`);
      return 78;
    }
    throw e;
  }
  const logger = createLogger({
    format: args.values.pretty ? 'pretty' : config.log.format,
    level: config.log.level,
  });
  // Signals are handled from before start-up until exit: a SIGTERM that arrives while the
  // daemon starts (or right after it printed its address) must not kill it by the default
  // action, and a second signal means "exit now" (1) rather than death by signal.
  let signalled: string | null = null;
  let onSignal: (sig: string) => void = (sig) => {
    signalled ??= sig;
  };
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    const h = (): void => onSignal(sig);
    handlers.set(sig, h);
    process.on(sig, h);
  }
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  try {
    daemon = await startDaemon(config, { logger, sync: !args.values['unsafe-no-sync'] });
  } catch (e) {
    // startDaemon has stopped whatever it had started: say why and exit like any failed start.
    for (const [sig, h] of handlers) process.off(sig, h);
    logger.flush?.();
    io.stderr.write(`logmta: cannot start: ${errorText(e)}\n`);
    return 70;
  }
  io.stderr.write(
    `logmta: SMTP on ${daemon.addresses.smtp.join(', ') || '(none)'}` +
      (daemon.addresses.submission.length
        ? `, submission on ${daemon.addresses.submission.join(', ')}`
        : '') +
      (daemon.addresses.submissions.length
        ? `, submissions (TLS) on ${daemon.addresses.submissions.join(', ')}`
        : '') +
      `; data in ${config.dataDir}\n` +
      (daemon.addresses.odmr.length ? `logmta: ODMR (ATRN) on ${daemon.addresses.odmr.join(', ')}\n` : ''),
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    onSignal = (sig) => {
      if (stopping) process.exit(1);
      stopping = true;
      logger.info({ signal: sig }, 'stopping');
      daemon.stop(5_000).then(resolve, resolve);
    };
    if (signalled !== null) onSignal(signalled);
  });
  for (const [sig, h] of handlers) process.off(sig, h);
  logger.flush?.();
  // Crash-only: stop() has ended everything that matters. A connection still stuck in its
  // connect (a peer that never answers) must not keep the process alive after the grace period.
  setTimeout(() => process.exit(0), 500).unref();
  return 0;
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' },
      listen: { type: 'string', multiple: true },
      'data-dir': { type: 'string' },
      pretty: { type: 'boolean' },
      /** Benchmark-only: never fdatasync. Not for production. */
      'unsafe-no-sync': { type: 'boolean' },
    },
    allowPositionals: false,
  });
}
