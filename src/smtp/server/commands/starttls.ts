// STARTTLS (RFC 3207). Invariant: bytes the client pipelined after STARTTLS are discarded, never
// executed (command injection defence, CVE-2011-0411 class); after the handshake the session forgets
// HELO, transaction, AUTH identity and everything learnt in plaintext.

import type { SmtpSession } from '../session.js';

export function starttls(s: SmtpSession, args: string): void {
  if (!s.io.startTls) {
    s.badCommand(502, '5.5.1', 'Command not implemented');
    return;
  }
  if (args.length > 0) {
    s.badCommand(501, '5.5.4', 'Syntax: STARTTLS');
    return;
  }
  if (s.client.tls) {
    s.badCommand(503, '5.5.1', 'TLS already active');
    return;
  }
  s.reply(220, '2.0.0', 'Ready to start TLS');
  s.beginTls();
}
