#!/usr/bin/env python3
"""A TCP peer that is not Node, for the reset tests (cli-resets.test.ts).

Node's own sockets may report a peer's RST as a clean end (libuv reads EOF on
POLLHUP after a partial read), so a Node client cannot tell us whether the
tunnel passed a reset on. Python's socket module reads again and sees it.

Every mode prints one JSON line per event on stdout:

  serve-rst BYTES          target: listen on 127.0.0.1, port 0, print {"port": N};
                           each connection gets BYTES bytes, then an RST
                           (SO_LINGER 0) while the data is still on its way
  serve-read               target: listen, print {"port": N}; each connection is
                           read until its end or a reset, then
                           {"how": "end" | "reset", "bytes": n}
  read PORT COUNT          client: COUNT times, connect and read as fast as possible
                           until the end or a reset: {"how": ..., "bytes": n}
  upload-rst PORT COUNT BYTES
                           client: COUNT times, connect, send BYTES bytes (more than
                           the tunnel carries at once), then reset the connection
                           (SO_LINGER 0) while they are still on their way: {"sent": n}
"""
import json
import socket
import struct
import sys

LINGER_0 = struct.pack('ii', 1, 0)


def out(**fields):
    sys.stdout.write(json.dumps(fields) + '\n')
    sys.stdout.flush()


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
    conn.close()


def listener():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(64)
    out(port=s.getsockname()[1])
    return s


def read_until_end(conn):
    """'end' for a clean end (recv returned b''), 'reset' for ECONNRESET."""
    total = 0
    try:
        while True:
            chunk = conn.recv(1 << 16)
            if not chunk:
                return 'end', total
            total += len(chunk)
    except ConnectionResetError:
        return 'reset', total


def serve_rst(nbytes):
    s = listener()
    data = b'r' * nbytes
    while True:
        conn, _ = s.accept()
        try:
            conn.sendall(data)
        except OSError:
            pass
        reset(conn)


def serve_read():
    s = listener()
    while True:
        conn, _ = s.accept()
        how, total = read_until_end(conn)
        conn.close()
        out(how=how, bytes=total)


def read(port, count):
    for _ in range(count):
        conn = socket.create_connection(('127.0.0.1', port))
        how, total = read_until_end(conn)
        conn.close()
        out(how=how, bytes=total)


def upload_rst(port, count, nbytes):
    data = b'u' * nbytes
    for _ in range(count):
        conn = socket.create_connection(('127.0.0.1', port))
        try:
            conn.sendall(data)
            out(sent=nbytes)
        except OSError as err:
            out(sent=0, error=str(err))
        reset(conn)


def main(argv):
    mode = argv[1]
    if mode == 'serve-rst':
        serve_rst(int(argv[2]))
    elif mode == 'serve-read':
        serve_read()
    elif mode == 'read':
        read(int(argv[2]), int(argv[3]))
    elif mode == 'upload-rst':
        upload_rst(int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        raise SystemExit('unknown mode ' + mode)


if __name__ == '__main__':
    try:
        main(sys.argv)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
