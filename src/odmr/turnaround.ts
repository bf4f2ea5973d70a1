// The ODMR turnaround (RFC 2645 §4.3): one object owns the socket — plain, or TLS negotiated
// before AUTH, which carries over — and the bytes already read that belong to the next role, while
// it passes from one role to the other on the same connection. The provider's server role
// hands it over after its 250 to ATRN (fromServer) and the provider becomes the client (client);
// the customer's client role gives it up after that 250 (fromClient) and the customer becomes
// the server (serve). Provider and customer both go through here, so the rules are one: the
// socket is paused while no role reads it, nothing read by one role is lost to the next, and
// a peer that speaks out of turn (a provider sending before the customer's 220) ends it.
// Fails: fromClient throws ODMR_PROTOCOL for bytes out of turn; client() rejects like
// SmtpClient.adopt; serve() never rejects (a lost connection resolves with quit: false).

import type net from 'node:net';
import { MtaError } from '../errors.js';
import { type AdoptOptions, SmtpClient } from '../smtp/client/index.js';
import { type CommandTable, defaultCommands } from '../smtp/server/commands/table.js';
import { type AnySocket, Connection, type ConnectionOwner } from '../smtp/server/connection.js';
import type { ServerHooks, ServerLogger } from '../smtp/server/hooks.js';
import type { SessionOptions } from '../smtp/server/options.js';
import type { Clock } from '../util/clock.js';

/** How often the server role checks its session for idleness (a listener's sweep, for one). */
const SWEEP_MS = 1_000;
/** A closing server role's socket is destroyed after this long if the peer lingers. */
const LINGER_MS = 10_000;

export interface ServeOptions {
  /** Server-role session options (hostname, limits). */
  session: SessionOptions;
  /** The hooks that take the mail (the daemon's: policy and queue). */
  hooks: ServerHooks;
  clock: Clock;
  logger?: ServerLogger | undefined;
}

export class Turnaround {
  private taken = false;

  private constructor(
    private readonly sock: AnySocket,
    /** Bytes read by the previous role that belong to the next one. */
    private readonly pending: Buffer,
  ) {
    sock.pause();
  }

  /** The server role gave the socket up (Connection.handOver) with its unread input. */
  static fromServer(socket: AnySocket, pending: Buffer): Turnaround {
    return new Turnaround(socket, pending);
  }

  /**
   * The client role gives the socket up once the peer's reply turned it around. A peer that
   * sent anything beyond that reply spoke out of turn: the socket is destroyed.
   */
  static fromClient(client: SmtpClient, peer: string): Turnaround {
    const { socket, clean } = client.connection.release();
    if (!clean) {
      socket.destroy();
      throw new MtaError('ODMR_PROTOCOL', 'transient', `${peer} sent data before our greeting`);
    }
    return new Turnaround(socket, Buffer.alloc(0));
  }

  get socket(): AnySocket {
    return this.sock;
  }

  /** Bytes already read that belong to the next role (the customer's 220, sent early). */
  get unread(): Buffer {
    return this.pending;
  }

  /**
   * Becomes the SMTP client on the socket: reads the peer's 220 (or takes `greeting`, read by
   * someone else) and sends EHLO. TLS already on the socket carries over: no second STARTTLS.
   */
  client(opts: Omit<AdoptOptions, 'initialBytes' | 'tls'>): Promise<SmtpClient> {
    this.take();
    return SmtpClient.adopt(this.sock as net.Socket, {
      ...opts,
      initialBytes: this.pending,
      tls: { mode: 'none' },
    });
  }

  /**
   * Becomes the SMTP server on the socket — greets with 220 and runs an ordinary session with
   * its idle timeout — until the peer QUITs or the connection is lost. Resolves with the
   * messages accepted and whether the peer ended with QUIT.
   */
  serve(o: ServeOptions): Promise<{ messages: number; quit: boolean }> {
    this.take();
    let messages = 0;
    let quit = false;
    const hooks: ServerHooks = {
      ...o.hooks,
      accept: async (m, ctx) => {
        const r = await o.hooks.accept(m, ctx);
        messages++;
        return r;
      },
    };
    const clock = o.clock;
    return new Promise((resolve) => {
      let cancelSweep: (() => void) | undefined;
      const owner: ConnectionOwner = {
        sessionOptions: { ...o.session, clock, odmrCustomer: true },
        hooks,
        commands: withQuitSeen(hooks, () => {
          quit = true;
        }),
        secureContext: undefined,
        implicitTls: false,
        logger: o.logger,
        now: () => clock.now(),
        released: () => {
          cancelSweep?.();
          resolve({ messages, quit });
        },
        // No second turnaround in this direction.
        handOver: (_c: Connection, s: AnySocket) => {
          s.destroy();
          return true;
        },
      };
      const conn = new Connection(this.sock as net.Socket, owner);
      this.sock.resume();
      // The server role's idle timeout (a listener's sweep does this for ordinary connections).
      const sweep = (): void => {
        cancelSweep = clock.setTimer(SWEEP_MS, () => {
          conn.session.checkIdle(clock.now());
          if (conn.closingSince !== 0 && clock.now() - conn.closingSince > LINGER_MS) conn.socket.destroy();
          sweep();
        });
      };
      sweep();
    });
  }

  /** Ends the connection (a turnaround nobody took). */
  destroy(): void {
    this.sock.destroy();
  }

  private take(): void {
    if (this.taken) throw new Error('turnaround: the socket already has its next role');
    this.taken = true;
  }
}

/** The default commands, with QUIT telling `seen` first: the peer ended the session itself. */
function withQuitSeen(hooks: ServerHooks, seen: () => void): CommandTable {
  const table = defaultCommands(hooks);
  const quit = table.verbs.get('QUIT');
  if (!quit) return table;
  const verbs = new Map(table.verbs);
  verbs.set('QUIT', {
    ...quit,
    handler: (s, args) => {
      seen();
      return quit.handler(s, args);
    },
  });
  return { ...table, verbs };
}
