/**
 * webclient (WebForwardTunnel) as a user meets it: slow or broken clients
 * must not hang stop(), and a queue nobody publishes gets an HTTP answer.
 */
import * as assert from 'node:assert/strict';
import { once } from 'node:events';
import * as http from 'node:http';
import * as net from 'node:net';
import { publish, webForward, type Tunnel } from '../../src/tunnel';
import { AMQP_URL as BROKER, uniqueQueue } from './support';

/** `p`, or a failure naming `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once `cond` holds (checked every few ms: nothing emits an event for it). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

/** Everything the server sends until it closes (end or reset). */
function response(c: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    c.on('data', (d: Buffer) => (text += d.toString()));
    c.once('close', () => resolve(text));
    c.on('error', () => undefined);
  });
}

describe('webclient: slow clients and missing listeners (real broker)', function () {
  this.timeout(30_000);
  const cleanup: Array<() => Promise<unknown> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  function track<T extends Tunnel>(t: T): T {
    cleanup.push(() => t.stop());
    return t;
  }

  it('stop() does not wait for a client that never finishes its request head', async () => {
    const web = track(webForward({ bind: '0', broker: BROKER }));
    await web.ready;
    const c = net.connect({ port: web.address!.port, host: '127.0.0.1' });
    cleanup.push(() => void c.destroy());
    const closed = response(c);
    c.write('GET / HTTP/1.1\r\nHost: example\r\n'); // no blank line: the head never ends
    await once(c, 'connect');
    // The connection is accepted and waiting for the rest of its head.
    await until(() => web.pendingConnections === 1);
    await within(web.stop(), 5000, 'stop() with a client in the middle of its request head');
    await within(closed, 5000, 'the waiting client was not let go');
  });

  it('answers 408 Request Timeout to a client whose request head does not arrive in time', async () => {
    const web = track(webForward({ bind: '0', broker: BROKER, headerTimeoutMs: 300 }));
    await web.ready;
    const c = net.connect({ port: web.address!.port, host: '127.0.0.1' });
    cleanup.push(() => void c.destroy());
    const answer = response(c);
    c.write('GET / HTTP/1.1\r\nHost: exa');
    const text = await within(answer, 5000, 'an answer to an incomplete head');
    assert.match(text, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(text, /no complete request head within 300 ms/);
    // And the answered connection is let go.
    await within(until(() => web.pendingConnections === 0), 5000, 'the answered connection is still held');
  });

  it('answers 502 Bad Gateway with the reason when nothing listens on the requested queue', async () => {
    const web = track(webForward({ bind: '0', broker: BROKER }));
    await web.ready;
    const queue = uniqueQueue('nobody');
    const req = http.get({ host: '127.0.0.1', port: web.address!.port, path: '/', agent: false, headers: { 'X-AMQP-Server-Queue': queue } });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    let body = '';
    for await (const chunk of res) body += String(chunk);
    assert.equal(res.statusCode, 502);
    assert.match(body, new RegExp(`no listener on queue '${queue}'.*is the publisher running\\?`));
    assert.doesNotMatch(body, /guest:guest@/, 'the broker password was shown');
  });

  it('still carries requests to a published queue, and later requests on the same connection', async () => {
    const server = http.createServer((req, res) => res.end(`got ${req.url}`));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanup.push(() => void server.close());
    const queue = uniqueQueue('web');
    const pub = track(publish({ target: String((server.address() as net.AddressInfo).port), queue, broker: BROKER }));
    await pub.ready;
    const web = track(webForward({ bind: '0', broker: BROKER }));
    await web.ready;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.push(() => agent.destroy());
    const get = async (path: string): Promise<string> => {
      const req = http.get({ host: '127.0.0.1', port: web.address!.port, path, agent, headers: { 'X-AMQP-Server-Queue': queue } });
      const [res] = (await once(req, 'response')) as [http.IncomingMessage];
      let body = '';
      for await (const chunk of res) body += String(chunk);
      return `${res.statusCode} ${body}`;
    };
    assert.equal(await get('/one'), '200 got /one');
    assert.equal(await get('/two'), '200 got /two');
    assert.equal(web.stats().totalConnections, 1);
  });

  it('carries a request to a publisher that requires a tunnel secret when the webclient has the same secret', async () => {
    const server = http.createServer((req, res) => res.end(`got ${req.url}`));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanup.push(() => void server.close());
    const queue = uniqueQueue('web-secret');
    const secret = 'web-secret-0123456789abcdef';
    const pub = track(publish({ target: String((server.address() as net.AddressInfo).port), queue, broker: BROKER, secret }));
    await pub.ready;
    const web = track(webForward({ bind: '0', broker: BROKER, secret }));
    await web.ready;
    const req = http.get({ host: '127.0.0.1', port: web.address!.port, path: '/s', headers: { 'X-AMQP-Server-Queue': queue } });
    const [res] = (await within(once(req, 'response'), 10_000, 'the answer')) as [http.IncomingMessage];
    let body = '';
    for await (const chunk of res) body += String(chunk);
    assert.equal(`${res.statusCode} ${body}`, '200 got /s');
  });
});
