// A TCP forwarder standing for the network between two hosts: it listens on 127.0.0.1 at a port
// of its own and passes bytes both ways to a target port that can be set after it started (a
// daemon's port is known only once it runs). cut() is a partition — open connections are torn
// down and new ones are closed as soon as they arrive — and heal() ends it.
// Invariant: while cut, no byte reaches the target; close() destroys every socket it made and
// stops listening.
import net from 'node:net';

export class LinkProxy {
  target = 0;
  private isCut = false;
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server) {}

  static async start(): Promise<LinkProxy> {
    const server = net.createServer();
    const p = new LinkProxy(server);
    server.on('connection', (down) => p.forward(down));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return p;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Partition: every connection through it is torn down, and new ones closed at once. */
  cut(): void {
    this.isCut = true;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void {
    this.isCut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private forward(down: net.Socket): void {
    down.on('error', () => {});
    if (this.isCut || this.target === 0) {
      down.destroy();
      return;
    }
    const up = net.connect(this.target, '127.0.0.1');
    this.sockets.add(down).add(up);
    up.on('error', () => {});
    down.on('close', () => {
      this.sockets.delete(down);
      up.destroy();
    });
    up.on('close', () => {
      this.sockets.delete(up);
      down.destroy();
    });
    down.pipe(up);
    up.pipe(down);
  }
}
