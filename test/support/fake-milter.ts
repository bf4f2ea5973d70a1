// A scriptable milter for tests (never shipped): a loopback server speaking the
// filter side of the protocol with our own codec, answering each event with what the test's
// script returns and recording every command it received. The real filters (rspamd, opendkim)
// are in test/interop; this one reaches the corners they do not (RCPT and MAIL refusals, body
// replacement, macro lists, no-reply flags, old protocol versions).
import net from 'node:net';
import {
  decodeCommand,
  encodeResponse,
  type MilterResponse,
  type MtaCommand,
  PacketReader,
  SMFIF,
} from '../../src/milter/protocol.js';

export interface FakeMilterScript {
  /** The negotiation answer (default: version 6, every action, no protocol flags). */
  optneg?: Partial<Extract<MilterResponse, { type: 'optneg' }>>;
  /** Responses to a command (default: continue; nothing for macros, abort and quit). */
  on?: (c: MtaCommand, seen: MtaCommand[]) => MilterResponse[] | undefined;
}

export interface FakeMilter {
  address: { kind: 'inet'; host: string; port: number };
  /** Every command received, per connection. */
  sessions: MtaCommand[][];
  /** Closes every open connection (a filter process that died); new connections are still taken. */
  dropAll(): void;
  close(): Promise<void>;
}

const SILENT = new Set(['macro', 'abort', 'quit', 'quitnc']);

export async function startFakeMilter(script: FakeMilterScript = {}): Promise<FakeMilter> {
  const sessions: MtaCommand[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    const seen: MtaCommand[] = [];
    sessions.push(seen);
    const reader = new PacketReader();
    s.on('data', (d) => {
      const packets = reader.push(d);
      if (!Array.isArray(packets)) return void s.destroy();
      for (const p of packets) {
        const c = decodeCommand(p);
        if (!('type' in c)) return void s.destroy();
        seen.push(c);
        if (c.type === 'optneg') {
          s.write(
            encodeResponse({
              type: 'optneg',
              version: 6,
              actions: 0x1ff & ~SMFIF.SETSYMLIST,
              protocol: 0,
              macros: [],
              ...script.optneg,
            }),
          );
          continue;
        }
        const rs =
          script.on?.(c, seen) ?? (SILENT.has(c.type) ? [] : [{ type: 'continue' } as MilterResponse]);
        for (const r of rs) s.write(encodeResponse(r));
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: { kind: 'inet', host: '127.0.0.1', port: (server.address() as net.AddressInfo).port },
    sessions,
    dropAll: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
