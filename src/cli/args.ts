// Argument handling shared by subcommands: parse with node:util parseArgs, answer --help,
// and turn a parse error into the usage text and exit code 64 (EX_USAGE). Pure but for `io`.
import type { Io } from './main.js';

/** The parsed arguments, or the exit code when the command must stop here (error or --help). */
export function parseCommand<T extends { values: { help?: boolean | undefined } }>(
  name: string,
  usage: string,
  io: Io,
  parse: () => T,
): T | number {
  let parsed: T;
  try {
    parsed = parse();
  } catch (e) {
    io.stderr.write(`logmta ${name}: ${e instanceof Error ? e.message : String(e)}\n${usage}`);
    return 64;
  }
  if (parsed.values.help) {
    io.stdout.write(usage);
    return 0;
  }
  return parsed;
}
