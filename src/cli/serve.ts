// `logmta serve`: load the configuration (or the built-in defaults), start the daemon, print
// where it listens and where its data is, and stop on SIGTERM/SIGINT. Crash-only: stopping
// saves nothing, because the next start recovers from the log. SIGHUP reloads: the
// configuration is read again and checked (a bad one is refused and the daemon runs on), then
// the daemon is stopped and started on it in the same process — a restart in place.
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config/index.js';
import { startDaemon } from '../daemon.js';
import { SessionThreadSlot } from '../sessions/thread-host.js';
import { errorText } from '../errors.js';
import { createLogger } from '../log.js';
import { ListenSockets } from '../util/listen-sockets.js';
import type { Io } from './main.js';

export async function run(argv: string[], io: Io): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(argv);
  } catch (e) {
    io.stderr.write(`logmta serve: ${e instanceof Error ? e.message : String(e)}\n`);
    return 64;
  }
  const load = (): ReturnType<typeof loadConfig> => {
    const overrides: { listen?: string[]; dataDir?: string } = {};
    if (args.values.listen) overrides.listen = args.values.listen;
    if (args.values['data-dir']) overrides.dataDir = args.values['data-dir'];
    return loadConfig(args.values.config ? { file: args.values.config, overrides } : { overrides });
  };
  let config: ReturnType<typeof loadConfig>;
  try {
    config = load();
  } catch (e) {
    if (e instanceof ConfigError) {
      io.stderr.write(`logmta: invalid configuration:\n  ${e.problems.join('\n  ')}\n`);
      return 78;
    }
    throw e;
  }
  const loggerFor = (c: ReturnType<typeof loadConfig>) =>
    createLogger({ format: args.values.pretty ? 'pretty' : c.log.format, level: c.log.level });
  let logger = loggerFor(config);
  // Signals are handled from before start-up until exit: a SIGTERM that arrives while the
  // daemon starts (or right after it printed its address) must not kill it by the default
  // action, and a second signal means "exit now" (1) rather than death by signal. SIGHUP (a
  // reload) must never kill it either: before the daemon runs it is remembered, then acted on.
  let signalled: string | null = null;
  let hupPending = false;
  let onSignal: (sig: string) => void = (sig) => {
    if (sig === 'SIGHUP') hupPending = true;
    else signalled ??= sig;
  };
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    const h = (): void => onSignal(sig);
    handlers.set(sig, h);
    process.on(sig, h);
  }
  // The SMTP and ODMR ports and the control socket stay bound across reloads: a client that
  // connects while the daemon restarts in place waits for its answer instead of being refused
  // (util/listen-sockets.ts).
  const sockets = new ListenSockets((e, key) =>
    logger.error({ socket: key, err: errorText(e) }, 'listening socket error'),
  );
  // The SMTP session thread (smtp.session_thread) holds its own ports: kept across reloads too.
  const threads = new SessionThreadSlot();
  const refusal = (c: ReturnType<typeof loadConfig>): string =>
    `421 4.3.2 ${c.hostname} Service shutting down\r\n`;
  const start = async (c: ReturnType<typeof loadConfig>) => {
    try {
      return await startDaemon(c, {
        logger,
        sync: !args.values['unsafe-no-sync'],
        listenSockets: sockets,
        sessionThreads: threads,
      });
    } finally {
      // A port the configuration no longer names (or that a failed start opened) is closed.
      sockets.closeUnattached(refusal(c));
    }
  };
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  // The session thread loads while the queue recovers.
  if (config.smtp.sessionThread) threads.prewarm();
  try {
    daemon = await start(config);
  } catch (e) {
    // startDaemon has stopped whatever it had started: say why and exit like any failed start.
    for (const [sig, h] of handlers) process.off(sig, h);
    await threads.close();
    logger.flush?.();
    io.stderr.write(`logmta: cannot start: ${errorText(e)}\n`);
    return 70;
  }
  const announce = (): void => {
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
  };
  announce();
  const code = await new Promise<number>((resolve) => {
    let stopping = false;
    let reloading: Promise<void> | undefined;
    const stop = (sig: string): void => {
      if (stopping) process.exit(1);
      stopping = true;
      void (async () => {
        await reloading;
        logger.info({ signal: sig }, 'stopping');
        sockets.closeAll(refusal(config));
        const thread = threads.release();
        await daemon.stop(5_000).catch(() => {});
        await thread?.end(0);
        resolve(0);
      })();
    };
    // A reload is a restart in place, as crash-only start-up makes safe: the new configuration
    // is read and checked first, and a bad one leaves the running daemon as it is.
    const reload = async (): Promise<void> => {
      let next: ReturnType<typeof loadConfig>;
      try {
        next = load();
      } catch (e) {
        const problems = e instanceof ConfigError ? e.problems : [errorText(e)];
        logger.error({ problems }, 'reload refused: invalid configuration; running on as before');
        return;
      }
      if (next.dataDir !== config.dataDir)
        logger.warn(
          { from: config.dataDir, to: next.dataDir },
          'reload: data_dir changed; the queue in the old directory is no longer served (move it, or set data_dir back)',
        );
      logger.info({}, 'reloading');
      await daemon.stop(5_000).catch(() => {});
      logger.flush?.();
      // A new logger only when its settings changed (each holds a buffer on stdout).
      if (next.log.format !== config.log.format || next.log.level !== config.log.level)
        logger = loggerFor(next);
      try {
        daemon = await start(next);
        config = next;
        logger.info({}, 'reloaded');
        announce();
      } catch (e) {
        logger.error(
          { err: errorText(e) },
          'reload failed to start; starting again on the previous configuration',
        );
        try {
          daemon = await start(config);
          announce();
        } catch (e2) {
          logger.error({ err: errorText(e2) }, 'cannot start again');
          logger.flush?.();
          io.stderr.write(`logmta: cannot start: ${errorText(e2)}\n`);
          await threads.close();
          stopping = true;
          resolve(70);
        }
      }
    };
    onSignal = (sig) => {
      if (sig !== 'SIGHUP') return stop(sig);
      if (stopping || reloading) return; // one reload at a time; a stop wins
      reloading = reload().finally(() => {
        reloading = undefined;
      });
    };
    if (signalled !== null) onSignal(signalled);
    else if (hupPending) onSignal('SIGHUP');
  });
  for (const [sig, h] of handlers) process.off(sig, h);
  logger.flush?.();
  if (code !== 0) return code;
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
