// A DNS server that goes silent on cue: a UDP relay on 127.0.0.1 in front of the test DNS
// server (dns-server.ts). While `down`, questions are read and dropped — the resolver sees
// timeouts, as when its recursive resolver has died or the network to it is cut — and when up
// again each question is relayed and its answer sent back. With `noEdns` it plays a server too
// old for EDNS0: FORMERR to a question that carries an OPT record. Counts the questions it took.
// Invariant: one relay socket per question, closed once its answer is back or after 5 s; only
// UDP (the test zones give no truncated answers through it). close() stops everything.

import dgram from 'node:dgram';
import packet from 'dns-packet';

export interface DnsProxy {
  /** "127.0.0.1:PORT", as [dns] servers takes it. */
  address: string;
  /** Drop every question while true. */
  down: boolean;
  /** Answer FORMERR to every question with an EDNS0 OPT record (an old server, RFC 6891 §7). */
  noEdns: boolean;
  /** Questions received (dropped ones included). */
  questions: number;
  close(): Promise<void>;
}

export async function startDnsProxy(target: { host: string; port: number }): Promise<DnsProxy> {
  const sock = dgram.createSocket('udp4');
  const relays = new Set<dgram.Socket>();
  const proxy: DnsProxy = {
    address: '',
    down: false,
    noEdns: false,
    questions: 0,
    close: async () => {
      for (const r of relays) r.close();
      await new Promise<void>((res) => sock.close(() => res()));
    },
  };
  sock.on('message', (msg, from) => {
    proxy.questions++;
    if (proxy.down) return;
    if (proxy.noEdns) {
      const q = packet.decode(msg);
      if ((q.additionals ?? []).some((a) => a.type === 'OPT')) {
        const formErr = packet.encode({
          id: q.id,
          type: 'response',
          flags: packet.RECURSION_DESIRED | 1, // rcode 1: FORMERR
          questions: [], // as old servers answer: without the question
        });
        sock.send(formErr, from.port, from.address);
        return;
      }
    }
    const relay = dgram.createSocket('udp4');
    relays.add(relay);
    const done = () => {
      clearTimeout(timer);
      if (relays.delete(relay)) relay.close();
    };
    const timer = setTimeout(done, 5_000);
    relay.on('error', done);
    relay.on('message', (answer) => {
      sock.send(answer, from.port, from.address);
      done();
    });
    relay.send(msg, target.port, target.host);
  });
  await new Promise<void>((res) => sock.bind(0, '127.0.0.1', () => res()));
  proxy.address = `127.0.0.1:${sock.address().port}`;
  return proxy;
}
