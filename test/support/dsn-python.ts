// A delivery report read the way a sender's mail program reads it: by Python's `email` package,
// an independent MIME parser, not by our own code. Returns the report's header fields, its
// MIME tree, the fields of its message/delivery-status part (per message and per recipient, as
// Python's parser splits them) and what it returns of the original (header fields, and whether
// a body came back). Test-only; the caller skips when python3 is missing (hasPythonEmail).
// Fails: rejects with Python's complaint when the report cannot be read at all.

import { runTool } from './daemon.js';

export interface ReadReport {
  from: string;
  to: string;
  subject: string;
  autoSubmitted: string;
  /** Top-level type, e.g. multipart/report, and its report-type parameter. */
  contentType: string;
  reportType: string;
  /** Content types of the top-level parts, in order. */
  parts: string[];
  /** Parser defects anywhere in the tree (a well-formed report has none). */
  defects: string[];
  /** message/delivery-status: the per-message group and one group per recipient (field names lower-case). */
  perMessage: Record<string, string>;
  perRecipient: Record<string, string>[];
  /** The returned original: its type (text/rfc822-headers, message/rfc822), header fields, body. */
  returned: { type: string; headers: Record<string, string>; body: string | null };
  /** The human-readable part. */
  text: string;
}

const PY = `
import base64, email, json, quopri, sys
from email import policy
raw = sys.stdin.buffer.read()
m = email.message_from_bytes(raw, policy=policy.compat32)
def u(v):
    # compat32 keeps 8-bit header bytes as surrogates: give them back as the UTF-8 they were.
    return str(v).encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
def fields(msg):
    return {k.lower(): ' '.join(u(v).split()) for k, v in msg.raw_items()}
parts = m.get_payload() if m.is_multipart() else []
out = {
    'from': str(m.get('From', '')), 'to': str(m.get('To', '')), 'subject': str(m.get('Subject', '')),
    'autoSubmitted': str(m.get('Auto-Submitted', '')),
    'contentType': m.get_content_type(), 'reportType': m.get_param('report-type') or '',
    'parts': [p.get_content_type() for p in parts],
    'defects': [type(d).__name__ for p in m.walk() for d in p.defects],
    'perMessage': {}, 'perRecipient': [], 'text': '',
    'returned': {'type': '', 'headers': {}, 'body': None},
}
for p in parts:
    t = p.get_content_type()
    if t == 'message/delivery-status':
        groups = p.get_payload()
        if isinstance(groups, list) and groups:
            out['perMessage'] = fields(groups[0])
            out['perRecipient'] = [fields(g) for g in groups[1:]]
    elif t == 'message/global-delivery-status':
        # Python's parser knows only message/delivery-status: undo the encoding, split the groups.
        body = p.get_payload()
        raw = body[0].as_bytes() if isinstance(body, list) else body.encode('utf-8', 'surrogateescape')
        cte = str(p.get('Content-Transfer-Encoding', '')).lower()
        if cte == 'quoted-printable':
            raw = quopri.decodestring(raw)
        elif cte == 'base64':
            raw = base64.b64decode(raw)
        blocks = [b for b in raw.replace(b'\\r\\n', b'\\n').split(b'\\n\\n') if b.strip()]
        groups = [email.message_from_bytes(b + b'\\n\\n', policy=policy.compat32) for b in blocks]
        if groups:
            out['perMessage'] = fields(groups[0])
            out['perRecipient'] = [fields(g) for g in groups[1:]]
    elif t == 'text/plain':
        out['text'] = p.get_payload(decode=True).decode('utf-8', 'replace')
    elif t in ('text/rfc822-headers', 'message/global-headers'):
        h = email.message_from_bytes(p.get_payload(decode=True), policy=policy.compat32)
        out['returned'] = {'type': t, 'headers': fields(h), 'body': None}
    elif t in ('message/rfc822', 'message/global'):
        inner = p.get_payload()
        inner = inner[0] if isinstance(inner, list) else email.message_from_string(inner)
        cte = str(p.get('Content-Transfer-Encoding', '')).lower()
        if cte in ('quoted-printable', 'base64'):
            # message/global may be encoded as a whole (RFC 6532); Python parses it undecoded.
            raw = inner.as_bytes()
            raw = quopri.decodestring(raw) if cte == 'quoted-printable' else base64.b64decode(raw)
            inner = email.message_from_bytes(raw, policy=policy.compat32)
        body = inner.get_payload(decode=True)
        out['returned'] = {'type': t, 'headers': fields(inner),
                           'body': body.decode('utf-8', 'replace') if body is not None else ''}
print(json.dumps(out))
`;

/** Parses one report (as received on the wire) with Python's email package. */
export async function readReport(data: Buffer): Promise<ReadReport> {
  const r = await runTool('python3', ['-c', PY], { input: data });
  if (r.code !== 0) throw new Error(`python3 could not read the report:\n${r.stderr}`);
  return JSON.parse(r.stdout) as ReadReport;
}
