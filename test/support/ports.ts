// Free ports for test helpers that start a program which cannot listen on port 0 (opendkim,
// Dovecot): ask the kernel for one, release it, and let the program bind it (helpers retry on
// the rare clash).
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 at the time of asking. */
export function freeTcpPort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}
