// Free ports for test helpers that start a program which cannot listen on port 0 (opendkim,
// Dovecot): ask the kernel for one, release it, and let the program bind it (helpers retry on
// the rare clash).
// stablePort is for servers that must keep their port across a restart (a customer's host that
// is down and comes up again, NSD restarted with new zones): chosen at random below the kernel's
// ephemeral range (read from /proc, default 32768–60999), which the kernel never hands out on
// its own — as a client's source port or to a `listen(0)` — so nothing else can take the port
// in the moment its server is down.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net, { createServer } from 'node:net';

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

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 12_000) return low;
  } catch {
    // not Linux: the usual range's start
  }
  return 32768;
}

const tcpFree = (port: number) =>
  new Promise<boolean>((res) => {
    const srv = net.createServer();
    srv.once('error', () => res(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => res(true)));
  });

async function udpFree(port: number): Promise<boolean> {
  const udp = dgram.createSocket('udp4');
  const ok = await new Promise<boolean>((res) => {
    udp.once('error', () => res(false));
    udp.bind(port, '127.0.0.1', () => res(true));
  });
  await new Promise<void>((r) => udp.close(() => r()));
  return ok;
}

/** A loopback port free now for TCP (and for UDP too with `udp`), below the ephemeral range. */
export async function stablePort(opts: { udp?: boolean } = {}): Promise<number> {
  const top = Math.min(ephemeralLow(), 32768);
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * (top - 10_000));
    if ((!opts.udp || (await udpFree(port))) && (await tcpFree(port))) return port;
  }
}
