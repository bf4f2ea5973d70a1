// MX hosts for tests of a real `logmta serve`, which connects to MX hosts on port 25 as on the
// Internet: each host gets an address of its own in 127.0.0.0/8 (Linux answers every one of
// them on loopback), chosen at random so that tests running side by side do not meet, and
// listens on port 25 there. A host is a scriptable sink (sink.ts), a tarpit (accepts, never
// greets) or a listener of the test's own.
// Invariant: every host listens on loopback only; `close()` of each one is the caller's.
// Fails: `port25` is a skip reason when this process may not bind port 25 (not root, no
// CAP_NET_BIND_SERVICE); the start functions reject after 20 addresses that were all taken.

import net from 'node:net';
import { type SinkOptions, SmtpSink } from './sink.js';

/** A random loopback address other than 127.0.0.1 (127.0.0.0 and broadcast-like ends avoided). */
function randomLoopback(): string {
  const b = () => 1 + Math.floor(Math.random() * 254);
  return `127.${b()}.${b()}.${b()}`;
}

/** Runs `start(address)` on fresh loopback addresses until one is free (start rejects EADDRINUSE). */
export async function onFreeAddress<T>(start: (address: string) => Promise<T>): Promise<T> {
  let last: unknown;
  for (let i = 0; i < 20; i++) {
    try {
      return await start(randomLoopback());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      last = e;
    }
  }
  throw last;
}

function listen(server: net.Server, address: string): Promise<void> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(25, address, () => {
      server.off('error', rej);
      res();
    });
  });
}

/** Whether port 25 can be bound here: false, or the reason to skip. */
export async function port25(): Promise<false | string> {
  const s = net.createServer();
  try {
    await onFreeAddress((a) => listen(s, a));
    return false;
  } catch (e) {
    return `cannot listen on port 25 (${(e as NodeJS.ErrnoException).code ?? String(e)}): run as root`;
  } finally {
    await new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()));
  }
}

/** A sink listening on port 25 of an address of its own (`sink.host`). */
export function mxSink(opts: SinkOptions = {}): Promise<SmtpSink> {
  return onFreeAddress((address) => SmtpSink.start({ ...opts, address, port: 25 }));
}

/** A listener on port 25 of an address of its own that hands each connection to `onSocket`. */
export interface MxListener {
  host: string;
  /** Connections accepted so far. */
  connections: number;
  close(): Promise<void>;
}

export async function mxListener(onSocket: (s: net.Socket) => void): Promise<MxListener> {
  const sockets = new Set<net.Socket>();
  const l: MxListener = { host: '', connections: 0, close: async () => {} };
  const server = net.createServer((s) => {
    l.connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onSocket(s);
  });
  l.host = await onFreeAddress(async (a) => {
    await listen(server, a);
    return a;
  });
  l.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return l;
}

/** A tarpit: accepts connections and never says a word. */
export function mxTarpit(): Promise<MxListener> {
  return mxListener(() => {});
}

/** An address of its own where nothing listens (connections are refused). */
export async function mxDown(): Promise<string> {
  const l = await mxListener(() => {});
  await l.close();
  return l.host;
}
