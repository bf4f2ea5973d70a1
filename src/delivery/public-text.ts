// Texts that leave this host in delivery reports (RFC 3464 Diagnostic-Code and the human part):
// what an outside sender may read. Local failures are described by their error code, never by a
// file name (a path tells a stranger how the host is laid out); absolute paths that reach a report
// from anywhere else (a queue read error, an errno message) are replaced by "[path]". Pure.
// Invariant: the result holds no token that starts with "/" at a word boundary except URL parts
// ("https://host/x" is kept: the slash after "://" and inside a URL is not at a boundary).

const PATH = /(^|[\s'"(=<[,])\/(?!\/)[^\s'"()<>[\],;]*/g;

/** The text with every absolute file system path replaced by "[path]". */
export function withoutPaths(text: string): string {
  return text.replace(PATH, '$1[path]');
}
