// The `logmta` command: one file per subcommand; this file only dispatches.
// Exit codes follow sysexits(3) where one fits: 64 usage, 66 no input, 70 internal, 78 config.
import { run as serve } from './serve.js';

const USAGE = `usage: logmta <command> [options]

commands:
  serve [--config FILE] [--listen HOST:PORT]... [--data-dir DIR]
                          run the MTA (defaults: SMTP 127.0.0.1:2525, data ./logmta-data)
  log verify [DIR]        read-only check of a queue directory (default ./logmta-data/queue)
  log dump SEGMENT        print the records of one segment file
  help                    this text
`;

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export async function main(argv: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [cmd, sub, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return serve(argv.slice(1), io);
    case 'log':
      if (sub === 'verify' || sub === 'dump') {
        // Loaded on demand: the daemon does not need the inspection tools.
        const mod = (await import(sub === 'verify' ? './log-verify.js' : './log-dump.js')) as { run: (a: string[], io: Io) => Promise<number> };
        return mod.run(rest, io);
      }
      io.stderr.write(USAGE);
      return 64;
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
