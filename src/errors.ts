// Errors with a stable code and a kind. Every failure that crosses a module boundary is an
// MtaError (or a subclass): `kind` says whether retrying can help (transient) or not
// (permanent), and `smtp` carries the reply a server should give when the error reaches a
// client. Never throw or reject with a string.

export type ErrorKind = 'transient' | 'permanent';

export interface SmtpStatus {
  /** Three-digit reply code, e.g. 451. */
  code: number;
  /** Enhanced status code (RFC 3463), e.g. "4.3.0". */
  enhanced: string;
  /** The reply text to send as is (one line or several); absent: the error's message. */
  text?: string | readonly string[];
}

export class MtaError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  readonly smtp: SmtpStatus | undefined;

  constructor(
    code: string,
    kind: ErrorKind,
    message: string,
    opts: { smtp?: SmtpStatus; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'MtaError';
    this.code = code;
    this.kind = kind;
    this.smtp = opts.smtp;
  }
}

export function isMtaError(e: unknown): e is MtaError {
  return e instanceof MtaError;
}

/** Reply status for an error reaching an SMTP client; unknown errors are local transient failures. */
export function smtpStatusOf(e: unknown): SmtpStatus {
  if (e instanceof MtaError && e.smtp) return e.smtp;
  if (e instanceof MtaError && e.kind === 'permanent') return { code: 554, enhanced: '5.3.0' };
  return { code: 451, enhanced: '4.3.0' };
}

/** The message of any thrown value, for logs and diagnostics. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
