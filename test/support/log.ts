// A logger for tests that keeps every line in memory (and passes it on to another logger when
// given one), so a test can wait for and assert on the daemon's log events.
// Invariant: lines are kept in the order they were logged, a child's bindings merged into its
// lines' fields; nothing is dropped.
import type { LogFields, Logger } from '../../src/log.js';

export interface LogLine {
  level: string;
  msg: string;
  fields: LogFields;
}

export type CaptureLogger = Logger & { lines: LogLine[] };

/** A logger that keeps every line in `lines` (and forwards it to `inner`, if given). */
export function captureLogger(lines: LogLine[] = [], inner?: Logger, bindings?: LogFields): CaptureLogger {
  const at =
    (level: 'error' | 'warn' | 'info' | 'debug') =>
    (fields: LogFields, msg: string): void => {
      lines.push({ level, msg, fields: bindings === undefined ? fields : { ...bindings, ...fields } });
      inner?.[level](fields, msg);
    };
  return {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    child: (b) => captureLogger(lines, inner?.child(b), { ...bindings, ...b }),
    isLevelEnabled: () => true,
    flush() {
      inner?.flush();
    },
  };
}
