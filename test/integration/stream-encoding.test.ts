/**
 * Credit windows count bytes, also when the reader decodes text
 * (setEncoding): found in review, a utf8 reader let about 2.5 windows in.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type StreamSocket } from '../../src/stream';
import { AMQP_URL, uniqueQueue } from './support';

describe('stream: credit with a reader that called setEncoding() (real broker)', function () {
  this.timeout(30_000);
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  it('lets no more than one window in while a utf8 reader reads nothing, and delivers every character once it reads', async () => {
    const window = 64 * 1024;
    const l = await connect(AMQP_URL, { window });
    cleanups.push(() => l.close());
    const c = await connect(AMQP_URL, { window });
    cleanups.push(() => c.close());
    const q = uniqueQueue('encoding');
    let accept!: (s: StreamSocket) => void;
    const accepted = new Promise<StreamSocket>((r) => (accept = r));
    const server = l.createServer({}, (s) => accept(s));
    server.listen(q);
    await once(server, 'listening');
    const client = c.connect(q);
    await once(client, 'connect');
    const reader = await accepted;
    reader.setEncoding('utf8');
    const text = '€'.repeat(10_000); // 30,000 bytes of 3-byte characters
    for (let i = 0; i < 40; i++) client.write(text);
    client.end();
    // Nothing emits "the sender is stalled": watch bytesRead settle.
    let last = -1;
    for (let i = 0; i < 40 && reader.bytesRead !== last; i++) {
      last = reader.bytesRead;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(reader.bytesRead <= window, `${reader.bytesRead} bytes arrived with a ${window}-byte window and nothing read`);
    let got = '';
    reader.on('data', (d: string) => (got += d));
    await once(reader, 'end');
    assert.equal(got.length, 400_000);
    assert.ok(got === text.repeat(40));
  });
});
