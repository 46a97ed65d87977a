import type { AddressInfo } from 'node:net';
import { connect, createServer, type Socket } from 'node:net';

/** A loopback TCP proxy that a test can partition: the path between one instance and a server. */
export interface TcpProxy {
  /** `http://127.0.0.1:<port>`: use it instead of the target's URL. */
  readonly url: string;
  /**
   * Partitions: open connections are cut, and new ones are accepted but
   * never forwarded nor answered (a black hole: the client waits for its
   * own timeout, as across a real partition).
   */
  cut(): void;
  /** Forwards again. */
  heal(): void;
  close(): Promise<void>;
}

/** Starts a proxy on a random loopback port to `target` (`host:port`). */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const [host, port] = target.split(':') as [string, string];
  const open = new Set<Socket>();
  let partitioned = false;
  const server = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => {});
    if (partitioned) return; // held open, never answered
    const upstream = connect(Number(port), host);
    open.add(upstream);
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${own}`,
    cut() {
      partitioned = true;
      for (const s of open) s.destroy();
    },
    heal() {
      partitioned = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}
