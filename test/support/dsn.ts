// Reading a delivery status notification (RFC 3464) in tests: the fields of its
// message/delivery-status part, per message and per recipient. Pure.

/** Parses the message/delivery-status part of a DSN into per-message and per-recipient fields.
 *  Accepts CRLF (as on the wire) or LF (as in a Maildir) line ends. */
export function parseDsn(data: Buffer): {
  contentType: string;
  message: Record<string, string>;
  recipients: Record<string, string>[];
  text: string;
} {
  const text = data.toString('utf8').replace(/\r\n/g, '\n');
  const ct = /^Content-Type:\s*([^\n]*(?:\n[ \t][^\n]*)*)/im.exec(text)?.[1] ?? '';
  const at = text.search(/Content-Type:\s*message\/(global-)?delivery-status/i);
  if (at < 0) return { contentType: ct, message: {}, recipients: [], text };
  const partStart = text.indexOf('\n\n', at) + 2;
  const partEnd = text.indexOf('\n--', partStart);
  const groups = text
    .slice(partStart, partEnd < 0 ? undefined : partEnd)
    .split(/\n\n/)
    .filter((g) => g.trim().length > 0)
    .map((g) => {
      const o: Record<string, string> = {};
      for (const line of g.replace(/\n[ \t]+/g, ' ').split('\n')) {
        const c = line.indexOf(':');
        if (c > 0) o[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
      return o;
    });
  return { contentType: ct, message: groups[0] ?? {}, recipients: groups.slice(1), text };
}
