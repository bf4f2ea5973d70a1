// The `logmta` command: one file per subcommand; this file only dispatches.
// Exit codes follow sysexits(3) where one fits: 64 usage, 66 no input, 70 internal, 78 config.
import { run as serve } from './serve.js';

const USAGE = `usage: logmta <command> [options]

commands:
  serve [--config FILE] [--listen HOST:PORT]... [--data-dir DIR]
                          run the MTA (defaults: SMTP 127.0.0.1:2525, data ./logmta-data)
  check [--config FILE]   validate a configuration without starting (before a start or a reload)
  log verify [DIR]        read-only check of a queue directory (default ./logmta-data/queue)
  log dump SEGMENT        print the records of one segment file
  queue list|show|summary|flush|hold|release|delete|bounce [...]
                          inspect and control the running daemon's queue (docs/operations.md)
  sendmail [-t] [-f SENDER] [-i] [RECIPIENT...] | -q | -qRSITE | -bp
                          sendmail-compatible injector: a message on stdin to the daemon;
                          -q flushes the queue, -bp lists it (mailq)
  etrn HOST[:PORT] DOMAIN...
                          ask a server to start delivering a domain's queue (RFC 1985)
  odmr --provider HOST[:PORT] --user USER --password-file FILE [--domains D1,D2]
                          collect held mail from an ODMR provider once (RFC 2645 ATRN)
  cluster status|home|drain [...]
                          a logmta cluster on Redis: nodes, domain homes, draining (docs/cluster.md)
  help                    this text
`;

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Standard input (queue confirmations, sendmail's message); process.stdin when absent. */
  stdin?: NodeJS.ReadableStream;
}

export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serve(argv.slice(1), io);
    case 'check': {
      const mod = (await import('./check.js')) as { run: (a: string[], io: Io) => Promise<number> };
      return mod.run(argv.slice(1), io);
    }
    case 'log':
      if (sub === 'verify' || sub === 'dump') {
        // Loaded on demand: the daemon does not need the inspection tools.
        const mod = (await import(sub === 'verify' ? './log-verify.js' : './log-dump.js')) as {
          run: (a: string[], io: Io) => Promise<number>;
        };
        return mod.run(rest, io);
      }
      io.stderr.write(USAGE);
      return 64;
    case 'queue':
    case 'sendmail':
    case 'etrn': {
      // Client commands, loaded on demand (they talk to a running daemon).
      const file = cmd === 'queue' ? './queue.js' : cmd === 'sendmail' ? './sendmail.js' : './etrn.js';
      const mod = (await import(file)) as { run: (a: string[], io: Io) => Promise<number> };
      return mod.run(argv.slice(1), io);
    }
    case 'odmr': {
      // ODMR customer: one ATRN poll into this host's queue (docs/etrn-odmr.md).
      const mod = (await import('./odmr.js')) as { run: (a: string[], io: Io) => Promise<number> };
      return mod.run(argv.slice(1), io);
    }
    case 'cluster': {
      const mod = (await import('./cluster.js')) as { run: (a: string[], io: Io) => Promise<number> };
      return mod.run(argv.slice(1), io);
    }
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(USAGE);
      return 0;
    case undefined:
      io.stderr.write(USAGE);
      return 64;
    default:
      io.stderr.write(`logmta: unknown command "${cmd}"\n${USAGE}`);
      return 64;
  }
}
