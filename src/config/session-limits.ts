// The timeouts of every SMTP server session built from [smtp] — MTA, submission(s), the ODMR
// provider and the server role of an ODMR customer — in one place, so no listener misses one.
// Pure.

import type { SmtpConfig } from './schema.js';

export interface SessionTimeouts {
  idleTimeoutMs: number;
  commandTimeoutMs: number;
  dataLineTimeoutMs: number;
  minDataRate: number;
}

export function sessionTimeouts(smtp: SmtpConfig): SessionTimeouts {
  return {
    idleTimeoutMs: smtp.idleTimeoutMs,
    commandTimeoutMs: smtp.commandTimeoutMs,
    dataLineTimeoutMs: smtp.dataLineTimeoutMs,
    minDataRate: smtp.minDataRate,
  };
}
