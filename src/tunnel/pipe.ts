/**
 * The one pipe of the project: copies bytes both ways between a TCP socket
 * and a stream socket (any Duplex), like chisel's `Pipe`.
 *
 * - Half-close is passed on: the TCP peer's FIN ends the stream's writable
 *   side (an end-of-stream message), the stream's end becomes a FIN. A TCP
 *   'end' is checked first (a zero-length write), because Node may report
 *   a peer's RST as an end; a reset is passed on as a reset.
 *   Both ends must have been created with `allowHalfOpen: true`.
 * - Backpressure both ways: a side that cannot take more pauses the other.
 * - Nagle is off on the TCP socket (no 40 ms stall on requests written in pieces).
 * - An abort on either side aborts the other: a TCP socket is closed with
 *   `resetAndDestroy()` (RST), never with a clean FIN, so a truncated
 *   transfer never looks complete; a stream is `destroy(err)`ed, which sends
 *   a v2 peer a reset carrying the reason.
 * - Each end is closed exactly once; `done` resolves once both have closed,
 *   with the byte counts and the first error.
 */
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { TunnelError, describeError } from '../common/errors';

const EMPTY = Buffer.alloc(0);

export interface PipeResult {
  /** Bytes read from the TCP socket and written to the stream. */
  tcpToStream: number;
  /** Bytes read from the stream and written to the TCP socket. */
  streamToTcp: number;
  /** The first failure, when the pipe was aborted; undefined after a clean close of both ends. */
  error?: Error;
  /** Which side failed or closed abruptly first. */
  abortedBy?: 'tcp' | 'stream';
  /** Milliseconds from start to both ends closed. */
  durationMs: number;
}

export interface Pipe {
  readonly tcpToStream: number;
  readonly streamToTcp: number;
  readonly startedAt: number;
  /** Resolves (never rejects) when both ends have closed. */
  readonly done: Promise<PipeResult>;
  /**
   * Stop cleanly: stop reading TCP and end the stream (end-of-stream); the
   * TCP peer gets its FIN only after the rest of the stream's data, when the
   * stream's own end arrives. `destroyAfterMs` later, what is left is
   * destroyed: a TCP peer that has not had its FIN by then gets an RST.
   */
  end(destroyAfterMs?: number): void;
  /** Abort both ends: RST on TCP, reset on the stream. */
  abort(err: Error): void;
}

/**
 * Close `socket` with a TCP RST. While its FIN is still being sent (end()
 * called, shutdown pending) it is destroyed instead: libuv cannot reset a
 * socket with a pending shutdown, and Node then never releases the handle,
 * so the process would never exit.
 */
export function resetSocket(socket: net.Socket): void {
  if (socket.destroyed) return;
  const shutdownPending = socket.writableEnded && !socket.writableFinished;
  const hasHandle = Boolean((socket as { _handle?: unknown })._handle);
  if (!shutdownPending && !socket.connecting && hasHandle) socket.resetAndDestroy();
  else socket.destroy();
}

/** Start copying between `tcp` and `stream`. */
export function pipe(tcp: net.Socket, stream: Duplex): Pipe {
  const startedAt = Date.now();
  let tcpToStream = 0;
  let streamToTcp = 0;
  let error: Error | undefined;
  let abortedBy: 'tcp' | 'stream' | undefined;
  let tcpClosed = false;
  let streamClosed = false;
  let endTimer: NodeJS.Timeout | undefined;
  /** end() was called: TCP is read no more until the stream's end has been passed on. */
  let stopping = false;
  let resolveDone!: (r: PipeResult) => void;
  const done = new Promise<PipeResult>((resolve) => (resolveDone = resolve));

  // Nagle off, as ssh and chisel do: the stream delivers a request written in
  // pieces (a debug adapter's header, then its body) as separate writes, and
  // with Nagle the second piece waits for the ACK of the first, which a peer
  // that answers only whole requests delays by ~40 ms. Bulk is unaffected:
  // its writes are full messages.
  tcp.setNoDelay(true);

  const resetTcp = (): void => resetSocket(tcp);
  const resetStream = (err: Error): void => {
    if (!stream.destroyed) stream.destroy(err);
  };

  const fail = (side: 'tcp' | 'stream', err: Error): void => {
    if (!error) {
      error = err;
      abortedBy = side;
    }
    if (side === 'tcp') resetStream(err);
    else resetTcp();
  };

  // TCP -> stream
  tcp.on('data', (chunk: Buffer) => {
    if (stopping) {
      // Read only after the stream's end went out (see end()): these bytes can no longer be delivered.
      fail('tcp', new TunnelError('ECONNRESET', `the tunnel stopped; ${chunk.length} bytes from the TCP peer could not be delivered`));
      return;
    }
    tcpToStream += chunk.length;
    if (!stream.write(chunk)) tcp.pause();
  });
  stream.on('drain', () => {
    if (!stopping) tcp.resume();
  });
  tcp.on('end', () => {
    if (stream.destroyed || stream.writableEnded) return;
    // An 'end' may be a reset in disguise. When a peer's RST arrives while a
    // bulk receive is being drained, libuv sees POLLHUP after a partial read
    // and reports EOF without reading again, so the pending ECONNRESET is
    // never read (a plain Node client misreads such resets the same way).
    // Passed on as an end-of-stream, a truncated transfer would look
    // complete on the other side. A zero-length write asks the kernel: it
    // succeeds after a FIN (the socket is in CLOSE_WAIT) and fails with the
    // pending ECONNRESET (or EPIPE once the error was taken) after an RST.
    // Only then is the end passed on. Once our own FIN is out, Node allows
    // no write, so that case is passed on unchecked (see docs/protocol.md).
    if (!tcp.writable) {
      stream.end();
      return;
    }
    tcp.write(EMPTY, (err) => {
      if (err) {
        fail('tcp', new TunnelError('ECONNRESET', `the TCP peer reset the connection (${describeError(err)})`, { cause: err }));
        return;
      }
      if (!stream.destroyed && !stream.writableEnded) stream.end();
    });
  });

  // stream -> TCP
  stream.on('data', (chunk: Buffer) => {
    streamToTcp += chunk.length;
    if (!tcp.write(chunk)) stream.pause();
  });
  tcp.on('drain', () => stream.resume());
  stream.on('end', () => {
    if (!tcp.destroyed && !tcp.writableEnded) tcp.end();
  });
  // Stopping: once the FIN is out, read again, to see the TCP peer's own end.
  tcp.on('finish', () => {
    if (stopping) tcp.resume();
  });

  tcp.on('error', (err: Error) => fail('tcp', err));
  stream.on('error', (err: Error) => fail('stream', err));

  const finish = (): void => {
    if (!tcpClosed || !streamClosed) return;
    clearTimeout(endTimer);
    resolveDone({ tcpToStream, streamToTcp, error, abortedBy, durationMs: Date.now() - startedAt });
  };
  const cleanlyDone = (s: Duplex): boolean => s.readableEnded && s.writableFinished;

  tcp.on('close', () => {
    tcpClosed = true;
    if (!error && !cleanlyDone(tcp)) {
      fail('tcp', new TunnelError('ECONNRESET', 'the TCP connection closed before both directions had ended'));
    } else if (error) {
      resetStream(error);
    }
    finish();
  });
  stream.on('close', () => {
    streamClosed = true;
    if (!error && !cleanlyDone(stream)) {
      fail('stream', new TunnelError('ECONNRESET', 'the stream closed before both directions had ended'));
    } else if (error) {
      resetTcp();
    }
    finish();
  });

  return {
    get tcpToStream() {
      return tcpToStream;
    },
    get streamToTcp() {
      return streamToTcp;
    },
    startedAt,
    done,
    end(destroyAfterMs = 2000) {
      // Only the stream is ended here. A FIN to the TCP peer now would let it
      // read a clean end while the rest of the data is still on its way
      // through the broker; the stream's end (after that data) ends TCP.
      stopping = true;
      if (!tcp.destroyed && !tcp.writableFinished) tcp.pause();
      if (!stream.destroyed && !stream.writableEnded) stream.end();
      if (!endTimer && !(tcpClosed && streamClosed)) {
        endTimer = setTimeout(() => {
          const err = new TunnelError('ETIMEDOUT', `the peer did not close within ${destroyAfterMs} ms after the tunnel stopped`);
          // Without its FIN the TCP peer has not had all the data: an RST, so it never reads a clean end.
          if (tcp.writableFinished) tcp.destroy();
          else resetTcp();
          resetStream(err);
        }, destroyAfterMs);
        endTimer.unref();
      }
    },
    abort(err: Error) {
      if (!error) {
        error = err;
        abortedBy = 'tcp';
      }
      resetTcp();
      resetStream(err);
    },
  };
}

/** One line about how a pipe ended, for logs. */
export function describePipeResult(r: PipeResult): string {
  const bytes = `${r.tcpToStream} bytes out, ${r.streamToTcp} bytes in, ${(r.durationMs / 1000).toFixed(1)} s`;
  return r.error ? `reset by the ${r.abortedBy} side (${describeError(r.error)}); ${bytes}` : `closed; ${bytes}`;
}
