// Reachability probe for ETRN domains: connect, read the greeting, EHLO (or HELO), QUIT.
// Invariant: never rejects and never leaves a socket open; true only if the peer greeted with
// 220 and accepted EHLO/HELO (and its greeting is not one refuseGreeting refuses). Shorter timeouts than a delivery by default: a probe that hangs
// is a failed probe.

import type { Clock } from '../../util/clock.js';
import { SmtpClient } from './session.js';

export interface ProbeOptions {
  /** Our EHLO name. */
  name?: string;
  clock?: Clock;
  /** Bound on each step (connect, greeting, EHLO, QUIT). Default 30 s. */
  timeoutMs?: number;
  /** A greeting (its text) this returns true for proves nothing: the probe fails (a loop to ourselves). */
  refuseGreeting?: (text: string | undefined) => boolean;
}

export async function probe(host: string, port: number, opts: ProbeOptions = {}): Promise<boolean> {
  const ms = opts.timeoutMs ?? 30_000;
  try {
    const client = await SmtpClient.connect(host, port, {
      name: opts.name ?? 'localhost',
      tls: { mode: 'none' },
      timeouts: { connect: ms, greeting: ms, command: ms, quit: ms },
      ...(opts.clock && { clock: opts.clock }),
    });
    await client.quit();
    return opts.refuseGreeting?.(client.greeting?.text) !== true;
  } catch {
    return false;
  }
}
