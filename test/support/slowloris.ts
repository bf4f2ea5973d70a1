// Slow clients for the slowloris tests (test/faults/slowloris.test.ts, bounded) and the long
// run with the default limits (test/long/slowloris.ts): a raw connection that sends a preamble
// at once and then trickles bytes one at a time, and the same for a TLS handshake; each reports
// how long after its first trickled byte the server closed it, and how much it had left to send.
// Invariant: never waits unboundedly (every wait has a deadline). Fails: rejects when the server
// does not greet or answer the preamble.

import net from 'node:net';

export interface Cut {
  /** ms from the preamble (or the connection, without one) to the close. */
  ms: number;
  /** Bytes of the trickle still unsent when the server closed. */
  unsent: number;
  /** What the server sent after the preamble. */
  said: string;
}

/**
 * Raw connection: reads the greeting and sends `preamble` at once, reads its `replies`, then
 * trickles `slow` byte by byte. `replies` null: no SMTP is expected (a TLS port), trickle at once.
 */
export async function slowClient(
  port: number,
  preamble: string,
  replies: number | null,
  slow: string,
  stepMs: number,
): Promise<Cut> {
  const s = net.connect(port, '127.0.0.1');
  s.setEncoding('latin1');
  s.on('error', () => {});
  let got = '';
  let closed = false;
  s.on('data', (x: string) => {
    got += x;
  });
  const closing = new Promise<void>((r) =>
    s.once('close', () => {
      closed = true;
      r();
    }),
  );
  const finals = (): number => got.split('\r\n').filter((l) => /^\d{3} /.test(l)).length;
  const until = async (n: number): Promise<void> => {
    const end = Date.now() + 10_000;
    while (finals() < n && !closed) {
      if (Date.now() > end) throw new Error(`no ${n} replies: ${JSON.stringify(got)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await new Promise<void>((r) => s.once('connect', () => r()));
  // From before the preamble is written: every deadline the server keeps starts after it has
  // read the preamble (and answered it), so the time measured from here is never shorter than
  // the server's — under load, reading its last reply can come late.
  let t0 = Date.now();
  if (replies !== null) {
    await until(1);
    t0 = Date.now();
    s.write(preamble);
    await until(1 + replies);
  }
  const seen = got.length;
  let sent = 0;
  const bytes = Buffer.from(slow, 'latin1');
  while (sent < bytes.length && !closed) {
    s.write(bytes.subarray(sent, sent + 1));
    sent++;
    await Promise.race([closing, new Promise((r) => setTimeout(r, stepMs))]);
  }
  await Promise.race([closing, new Promise((r) => setTimeout(r, Math.max(10_000, stepMs * 10)))]);
  s.destroy();
  return { ms: Date.now() - t0, unsent: bytes.length - sent, said: got.slice(seen) };
}

/** Opens the implicit-TLS port and trickles the start of a TLS ClientHello. */
export async function slowHandshake(port: number, stepMs: number, length = 200): Promise<Cut> {
  // A TLS 1.2 record header and the start of a ClientHello: valid so far, never finished.
  const hello = Buffer.concat([
    Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
    Buffer.alloc(length, 7),
  ]);
  return slowClient(port, '', null, hello.toString('latin1'), stepMs);
}

export interface TrickleResult {
  what: string;
  cut: Cut;
  /** The reply the server must have sent before closing (null: no SMTP at all, a TLS port). */
  reply: RegExp | null;
}

/**
 * The six slow clients at once, each trickling one byte every `stepMs`, `units` repetitions
 * long: a command line, an AUTH LOGIN answer, one endless DATA line, DATA as short lines, a BDAT
 * chunk (on `port`), and a TLS handshake (on the implicit-TLS `tlsPort`).
 */
export async function trickleAll(
  port: number,
  tlsPort: number,
  stepMs: number,
  units: number,
): Promise<TrickleResult[]> {
  const long = (c: string): string => c.repeat(units);
  const tx = 'EHLO a\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@localhost>\r\n';
  const timeout = /^421 4\.4\.2 .*timeout exceeded/m;
  const rate = /^421 4\.4\.2 .*data rate too low/m;
  const runs: [string, Promise<Cut>, RegExp | null][] = [
    ['command line', slowClient(port, '', 0, `EHLO ${long('x')}\r\n`, stepMs), timeout],
    [
      'AUTH LOGIN answer',
      slowClient(port, 'EHLO a\r\nAUTH LOGIN\r\n', 2, `${long('Q')}\r\n`, stepMs),
      timeout,
    ],
    ['endless DATA line', slowClient(port, `${tx}DATA\r\n`, 4, long('y'), stepMs), timeout],
    ['DATA of short lines', slowClient(port, `${tx}DATA\r\n`, 4, long('a\r\n'), stepMs), rate],
    // The BDAT command goes at once (its reply comes after the chunk); the chunk trickles.
    ['BDAT chunk', slowClient(port, `${tx}BDAT ${units * 3} LAST\r\n`, 3, long('zzz'), stepMs), rate],
    ['TLS handshake', slowHandshake(tlsPort, stepMs, units), null],
  ];
  const cuts = await Promise.all(runs.map((r) => r[1]));
  return runs.map(([what, , reply], i) => ({ what, cut: cuts[i] as Cut, reply }));
}
