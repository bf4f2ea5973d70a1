// Splits a command line into verb and argument text (RFC 5321 4.1.1).
// Invariant: the verb is upper-cased ASCII letters (case-insensitive commands); the argument is the
// text after the first space with trailing spaces removed (trailing white space is tolerated, as
// most servers do). A line that is empty, starts with a space, or holds control characters (CR,
// NUL, ...) has no valid verb: `verb` is '' and the session answers 500 5.5.2.
// Pure; never throws.

export interface CommandLine {
  verb: string;
  args: string;
}

const VERB = /^[A-Za-z]{1,16}$/;
// Control characters other than TAB are never valid in a command line.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

export function parseCommand(line: string): CommandLine {
  if (line.length === 0 || CONTROL.test(line)) return { verb: '', args: '' };
  const sp = line.indexOf(' ');
  const verb = sp === -1 ? line : line.slice(0, sp);
  if (!VERB.test(verb)) return { verb: '', args: '' };
  let args = sp === -1 ? '' : line.slice(sp + 1);
  let e = args.length;
  while (e > 0 && (args.charCodeAt(e - 1) === 32 || args.charCodeAt(e - 1) === 9)) e--;
  if (e !== args.length) args = args.slice(0, e);
  return { verb: verb.toUpperCase(), args };
}
