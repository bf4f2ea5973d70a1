// The error a listener that cannot bind reports at start-up: an MtaError LISTEN_FAILED
// (permanent: retrying the same configuration will not help) whose message names the address,
// the configuration key it came from and the reason in words an operator can act on.
// Pure; never throws.

import { MtaError } from '../errors.js';

const REASONS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (another process listens there)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'the address is not one of this host',
};

/** `what` e.g. "127.0.0.1:25", `key` e.g. "smtp.listen[1]". */
export function listenError(e: unknown, what: string, key: string): MtaError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const reason = (code && REASONS[code]) ?? (e instanceof Error ? e.message : String(e));
  return new MtaError('LISTEN_FAILED', 'permanent', `cannot listen on ${what} (${key}): ${reason}`, {
    cause: e,
  });
}
