/**
 * amqp-tunnel/stream: net-style sockets and servers over AMQP 0-9-1,
 * wire-compatible with the Go library amqp-stream (see docs/protocol.md).
 *
 *     const conn = await connect('amqp://guest:guest@localhost');
 *     conn.listen('echo', (socket) => socket.pipe(socket));
 *     const socket = conn.connect('echo');
 *
 * `dial(url)` and `listen(url)` take a Go-style address
 * (`amqp://user:pass@host/vhost?server_queue=NAME`) and own their broker
 * connection: it closes with the socket or server.
 */
import { TunnelError } from '../common/errors';
import { connect, type ConnectOptions } from './connection';
import type { StreamServer, ServerOptions } from './server';
import { StreamSocket, type SocketOptions } from './socket';
import { parseStreamUrl } from './url';

export { connect, Connection, DEFAULT_FEATURES, MAX_RESUME_GRACE, type ConnectOptions } from './connection';
export { StreamServer, type ServerOptions } from './server';
export { StreamSocket, type SocketOptions } from './socket';
export { TunnelError, type ErrorCode } from '../common/errors';
export type { Logger } from '../common/logger';
export { parseStreamUrl, redactUrl, queueNameProblem, type StreamUrl } from './url';
export { PROTOCOL_VERSION, FEATURES, type Feature } from './protocol';
export { queueExists } from './liveness';

function queueOf(url: string): string {
  const q = parseStreamUrl(url).serverQueue;
  if (!q) {
    throw new TunnelError('ERR_INVALID_URL', `the address names no queue; add ?server_queue=NAME to the broker URL`);
  }
  return q;
}

/** Open a stream to the listener named by `url`'s `server_queue`; the socket owns its broker connection. */
export function dial(url: string, options: ConnectOptions & SocketOptions = {}, onConnect?: () => void): StreamSocket {
  const queue = queueOf(url);
  const socket = new StreamSocket(options);
  if (onConnect) socket.once('connect', onConnect);
  connect(url, options).then(
    (conn) => {
      // Destroyed while the broker connection was opening: its 'close' has passed, so close the connection here.
      if (socket.destroyed) {
        void conn.close();
        return;
      }
      socket.once('close', () => void conn.close());
      socket._start(conn, queue);
    },
    (err: unknown) => socket.destroy(err as Error),
  );
  return socket;
}

/** Listen on `url`'s `server_queue`; the server owns its broker connection and closes it on 'close'. */
export function listen(
  url: string,
  options: ConnectOptions & ServerOptions = {},
  onConnection?: (socket: StreamSocket) => void,
): Promise<StreamServer> {
  const queue = queueOf(url);
  return connect(url, options).then(
    (conn) =>
      new Promise<StreamServer>((resolve, reject) => {
        const server = conn.createServer(options, onConnection);
        server.once('close', () => void conn.close());
        const onError = (err: Error): void => {
          void conn.close();
          reject(err);
        };
        server.once('error', onError);
        server.listen(queue, () => {
          server.off('error', onError);
          resolve(server);
        });
      }),
  );
}
