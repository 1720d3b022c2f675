/**
 * The narrow interface between tunnels and the broker: a source of open
 * stream connections. Tunnels never call `connect()` themselves, so several
 * tunnels can share one broker connection (`amqp-tunnel run`), and tests can
 * hand in something else.
 */
import { connect, type ConnectOptions, type Connection } from '../stream';
import { TunnelError } from '../common/errors';

/** What a tunnel uses of a broker connection (`openChannel` for discovery, src/tunnel/discovery.ts). */
export type BrokerLink = Pick<
  Connection,
  'connect' | 'createServer' | 'openChannel' | 'close' | 'isOpen' | 'blockedReason' | 'on' | 'once' | 'off'
> &
  Partial<Pick<Connection, 'reconnecting' | 'heldStreams'>>;

export interface Transport {
  /** The broker address, without password, for messages. */
  readonly address: string;
  /** An open broker connection: the same one for every caller until it is lost, then a new one. */
  acquire(): Promise<BrokerLink>;
  /** Close the current connection; later `acquire()` calls fail. */
  close(): Promise<void>;
}

/** A transport that connects to `url` with `options`, at most one connection at a time. */
export function brokerTransport(url: string, options: ConnectOptions = {}, address = url): Transport {
  let current: Connection | undefined;
  let pending: Promise<Connection> | undefined;
  let closed = false;
  const transport: Transport = {
    address,
    acquire(): Promise<BrokerLink> {
      if (closed) return Promise.reject(new TunnelError('ERR_AMQP_CLOSED', `the tunnel's broker connection to ${address} is closed`));
      if (current?.isOpen) return Promise.resolve(current);
      const back = current;
      if (back?.reconnecting) {
        // v2 `resume`: the connection reconnects with streams held; use it again once it is back.
        return new Promise<void>((resolve) => {
          const done = (): void => {
            back.off('reconnected', done);
            back.off('close', done);
            resolve();
          };
          back.once('reconnected', done);
          back.once('close', done);
        }).then(() => transport.acquire());
      }
      pending ??= connect(url, options)
        .then((conn) => {
          conn.setMaxListeners(0);
          if (closed) {
            void conn.close();
            throw new TunnelError('ERR_AMQP_CLOSED', `the tunnel's broker connection to ${address} is closed`);
          }
          current = conn;
          conn.once('close', () => {
            if (current === conn) current = undefined;
          });
          return conn;
        })
        .finally(() => {
          pending = undefined;
        });
      return pending;
    },
    async close(): Promise<void> {
      closed = true;
      const conn = current;
      current = undefined;
      if (conn) await conn.close();
    },
  };
  return transport;
}
