// One DNS question to one server, over UDP (with EDNS0, 1232-byte answers; without it to a server
// that answers FORMERR to EDNS0) and over TCP when the UDP answer was truncated (RFC 7766).
// Encoding and decoding are dns-packet's. With `dnssec`, the question asks for validated answers:
// the DO bit (RFC 3225) and the AD bit (RFC 6840 §5.7), so that a validating resolver says in
// its answer's AD bit whether it validated it.
// Invariants: an answer is taken only if its id, QR bit and question match what was sent (from a
// connected socket, so only from the server asked); every socket is closed on every path, and
// the caller's deadline bounds each exchange.
// Fails with DnsError: ETIMEOUT (no answer in time), ECONNREFUSED (ICMP unreachable or a refused
// TCP connection), EBADRESP (an answer that does not decode). The rcode is the caller's business.

import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import packet, { type DecodedPacket, type Packet } from 'dns-packet';
import { setTimer } from '../util/clock.js';
import { DnsError, type LookupType } from './types.js';

export interface DnsServer {
  host: string;
  port: number;
}

/** The payload size we advertise: what fits in one packet on every path (DNS flag day 2020). */
const EDNS_PAYLOAD = 1232;

function question(name: string, type: LookupType, id: number, edns: boolean, dnssec: boolean): Packet {
  const p: Packet = {
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED | (dnssec ? packet.AUTHENTIC_DATA : 0),
    questions: [{ type, name, class: 'IN' }],
  };
  if (edns)
    p.additionals = [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: EDNS_PAYLOAD,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: dnssec ? packet.DNSSEC_OK : 0,
        flag_do: dnssec,
        options: [],
      },
    ];
  return p;
}

function matches(r: DecodedPacket, id: number, name: string, type: LookupType): boolean {
  const q = r.questions?.[0];
  if (r.id !== id || r.type !== 'response') return false;
  // An error answer need not repeat the question (an old server's FORMERR to EDNS0 often does not).
  if (q === undefined) return (r as { rcode?: string }).rcode !== 'NOERROR';
  return q.type === type && q.name.toLowerCase() === name.toLowerCase();
}

function socketError(e: unknown, name: string, type: LookupType, server: DnsServer): DnsError {
  const code = (e as NodeJS.ErrnoException).code;
  const where = `${server.host}:${server.port}`;
  if (code === 'ECONNREFUSED') return new DnsError('ECONNREFUSED', name, type, `${where} refused the query`);
  return new DnsError('ECONNREFUSED', name, type, `${where}: ${code ?? (e as Error).message}`);
}

type Finish = (err: DnsError | null, r?: DecodedPacket) => void;

/**
 * One exchange with a deadline: `run` starts it and calls `finish` once (later calls are
 * ignored); `close` releases its socket on every path.
 */
function exchange(
  server: DnsServer,
  name: string,
  type: LookupType,
  timeoutMs: number,
  how: string,
  run: (finish: Finish) => () => void,
): Promise<DecodedPacket> {
  return new Promise<DecodedPacket>((resolve, reject) => {
    let done = false;
    let close = (): void => {};
    const finish: Finish = (err, r) => {
      if (done) return;
      done = true;
      cancelTimer();
      close();
      if (err) reject(err);
      else resolve(r as DecodedPacket);
    };
    const where = `${server.host}:${server.port}`;
    const cancelTimer = setTimer(timeoutMs, () =>
      finish(new DnsError('ETIMEOUT', name, type, `no ${how} answer from ${where} in ${timeoutMs} ms`)),
    );
    close = run(finish);
  });
}

/** Sends the question over UDP; resolves with the first matching answer (possibly truncated). */
export function queryUdp(
  server: DnsServer,
  name: string,
  type: LookupType,
  timeoutMs: number,
  edns = true,
  dnssec = false,
): Promise<DecodedPacket> {
  const id = randomInt(0x10000);
  const msg = packet.encode(question(name, type, id, edns, dnssec));
  return exchange(server, name, type, timeoutMs, 'UDP', (finish) => {
    const sock = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
    sock.on('message', (buf) => {
      let r: DecodedPacket;
      try {
        r = packet.decode(buf);
      } catch {
        return; // not an answer to anything: keep waiting for the real one
      }
      if (matches(r, id, name, type)) finish(null, r);
    });
    sock.on('error', (e) => finish(socketError(e, name, type, server)));
    sock.connect(server.port, server.host, () => {
      sock.send(msg, (e) => {
        if (e) finish(socketError(e, name, type, server));
      });
    });
    return () => sock.close();
  });
}

/** Asks over TCP (two-byte length prefix), for answers too large for a datagram. */
function queryTcp(
  server: DnsServer,
  name: string,
  type: LookupType,
  timeoutMs: number,
  dnssec: boolean,
): Promise<DecodedPacket> {
  const id = randomInt(0x10000);
  const msg = packet.streamEncode(question(name, type, id, dnssec, dnssec));
  const where = `${server.host}:${server.port}`;
  return exchange(server, name, type, timeoutMs, 'TCP', (finish) => {
    let buf: Buffer = Buffer.alloc(0);
    const sock = net.connect({ host: server.host, port: server.port });
    sock.on('connect', () => sock.write(msg));
    sock.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      let r: DecodedPacket;
      try {
        r = packet.decode(buf.subarray(2, 2 + len));
      } catch {
        finish(new DnsError('EBADRESP', name, type, `undecodable TCP answer from ${where}`));
        return;
      }
      if (matches(r, id, name, type)) finish(null, r);
      else finish(new DnsError('EBADRESP', name, type, `mismatched TCP answer from ${where}`));
    });
    sock.on('error', (e) => finish(socketError(e, name, type, server)));
    sock.on('close', () =>
      finish(new DnsError('EBADRESP', name, type, `${where} closed the TCP connection early`)),
    );
    return () => sock.destroy();
  });
}

/**
 * UDP, then TCP if the answer came back truncated. A server too old for EDNS0 answers FORMERR to
 * the OPT record: it is asked again without one (RFC 6891 §7), its answers then at most 512 bytes.
 */
export async function query(
  server: DnsServer,
  name: string,
  type: LookupType,
  timeoutMs: number,
  dnssec = false,
): Promise<DecodedPacket> {
  let r = await queryUdp(server, name, type, timeoutMs, true, dnssec);
  if ((r as { rcode?: string }).rcode === 'FORMERR')
    r = await queryUdp(server, name, type, timeoutMs, false, dnssec);
  if (!r.flag_tc) return r;
  return queryTcp(server, name, type, timeoutMs, dnssec);
}
