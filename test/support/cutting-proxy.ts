// A TCP forwarder between an ODMR customer and its provider that cuts both sides once the
// provider has sent `cutAt` MAIL commands in the reversed session: the customer's line going
// dead while a message is under way, at a chosen point, without timing.
// Invariant: close() destroys every socket it made and stops listening.
import net from 'node:net';

/** Forwards a TCP connection; cuts both sides once the provider has sent `cutAt` MAIL commands. */
export async function cuttingProxy(
  target: number,
  cutAt: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    sockets.add(down).add(up);
    let mails = 0;
    down.on('error', () => {}).on('close', () => up.destroy());
    up.on('error', () => {}).on('close', () => down.destroy());
    down.on('data', (b) => up.write(b));
    up.on('data', (b: Buffer) => {
      mails += b.toString('latin1').split('MAIL FROM:').length - 1;
      if (mails >= cutAt) {
        // The customer's line goes dead while the provider is sending a message.
        up.destroy();
        down.destroy();
        return;
      }
      down.write(b);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
