import * as assert from 'node:assert/strict';
import { MessagePacker } from '../../src/stream/packer';
import {
  FEATURES_HEADER,
  OFFSET_HEADER,
  PING_HEADER,
  RESET_HEADER,
  RESUME_HEADER,
  RESUMED_HEADER,
  RETRANSMIT_HEADER,
  VERSION_HEADER,
  classify,
  commonFeatures,
  connectionRequestProblem,
  handshakeHeaders,
  negotiate,
  peerFeatures,
  peerVersion,
  pingOptions,
  resetOptions,
  retransmitOptions,
} from '../../src/stream/protocol';
import { resolveResumeGrace } from '../../src/stream/connection';

const msg = (body: string, headers?: Record<string, unknown>) => ({ content: Buffer.from(body), properties: { headers } });

describe('message packer (coalescing and splitting)', () => {
  it('gathers small writes into one message on flush', () => {
    const p = new MessagePacker(1000);
    for (let i = 0; i < 100; i++) assert.deepEqual(p.add(Buffer.from('ab')), []);
    assert.equal(p.pending, 200);
    assert.equal(p.flush()!.toString(), 'ab'.repeat(100));
    assert.equal(p.flush(), undefined);
  });

  it('splits a large write into full messages and keeps the remainder', () => {
    const p = new MessagePacker(1000);
    const out = p.add(Buffer.alloc(2500, 1));
    assert.deepEqual(out.map((b) => b.length), [1000, 1000]);
    assert.equal(p.flush()!.length, 500);
  });

  it('fills a partly filled message before starting the next, keeping byte order', () => {
    const p = new MessagePacker(4);
    assert.deepEqual(p.add(Buffer.from('ab')), []);
    const out = p.add(Buffer.from('cdefghij'));
    assert.deepEqual(out.map(String), ['abcd', 'efgh']);
    assert.equal(p.flush()!.toString(), 'ij');
  });

  it('refuses a size that is not a positive integer', () => {
    assert.throws(() => new MessagePacker(0), RangeError);
  });
});

describe('wire protocol vocabulary', () => {
  it('reads v1 messages as data or EOF and ignores v2 headers from a v1 peer', () => {
    assert.deepEqual(classify(msg('x'), 1), { kind: 'data', body: Buffer.from('x') });
    assert.deepEqual(classify(msg(''), 1), { kind: 'eof' });
    assert.deepEqual(classify(msg('', { [RESET_HEADER]: 'boom' }), 1), { kind: 'eof' });
  });

  it('reads v2 resets and pings', () => {
    assert.deepEqual(classify(msg('', { [RESET_HEADER]: Buffer.from('target refused') }), 2), { kind: 'reset', reason: 'target refused' });
    assert.deepEqual(classify(msg('', pingOptions().headers), 2), { kind: 'ping' });
    assert.deepEqual(classify(msg(''), 2), { kind: 'eof' });
    assert.ok(PING_HEADER in pingOptions().headers!);
    assert.equal(resetOptions('x'.repeat(500)).headers![RESET_HEADER].length, 200, 'reasons are bounded');
  });

  it('negotiates the lower version, treating a silent peer as v1', () => {
    assert.equal(peerVersion(undefined), 1);
    assert.equal(peerVersion({ [VERSION_HEADER]: 2 }), 2);
    assert.equal(peerVersion({ [VERSION_HEADER]: '7' }), 7);
    assert.equal(peerVersion({ [VERSION_HEADER]: 'junk' }), 1);
    assert.equal(negotiate(7), 2);
    assert.equal(negotiate(1), 1);
  });

  it('accepts only empty-body connection requests with a reply-to', () => {
    assert.equal(connectionRequestProblem({ content: Buffer.alloc(0), properties: { replyTo: 'amq.gen-x' } }), undefined);
    assert.match(connectionRequestProblem({ content: Buffer.from('hi'), properties: { replyTo: 'q' } })!.text, /2-byte body/);
    assert.match(connectionRequestProblem({ content: Buffer.alloc(0), properties: {} })!.text, /no reply-to/);
    assert.match(connectionRequestProblem({ content: Buffer.alloc(0), properties: { replyTo: '' } })!.text, /no reply-to/);
    assert.equal(connectionRequestProblem({ content: Buffer.alloc(0), properties: { replyTo: 'svc' } }, 'svc')!.kind, 'own queue');
    assert.equal(connectionRequestProblem({ content: Buffer.alloc(0), properties: { replyTo: 'amq.gen-x' } }, 'svc'), undefined);
  });

  it('v2: an empty message with a reply-to or a handshake header is a stray handshake, never an end', () => {
    const withReplyTo = (replyTo: string) => ({ content: Buffer.alloc(0), properties: { replyTo } });
    assert.deepEqual(classify(withReplyTo('amq.gen-x'), 2), { kind: 'stray' });
    assert.deepEqual(classify(withReplyTo(''), 2), { kind: 'stray' });
    assert.deepEqual(classify(msg('', { [VERSION_HEADER]: 2 }), 2), { kind: 'stray' });
    assert.deepEqual(classify(msg('', { [FEATURES_HEADER]: 'seq' }), 2), { kind: 'stray' });
    // v1 stays the Go library's reading: any empty body ends the stream.
    assert.deepEqual(classify(withReplyTo('amq.gen-x'), 1), { kind: 'eof' });
    // A body is data whatever rides along (plain v2 cannot tell a stranger's body from the peer's).
    assert.deepEqual(classify({ content: Buffer.from('x'), properties: { replyTo: 'q' } }, 2), { kind: 'data', body: Buffer.from('x') });
  });

  it('v2: a reset reason from the wire becomes one short printable line, whatever its type', () => {
    const reason = (value: unknown) => (classify(msg('', { [RESET_HEADER]: value }), 2) as { reason: string }).reason;
    assert.equal(reason('evil\nFAKE LOG LINE\u001b[31m'), 'evil FAKE LOG LINE [31m');
    assert.equal(reason('x'.repeat(100_000)).length, 200);
    assert.equal(reason(Buffer.alloc(100_000, 0x41)).length, 200);
    assert.equal(reason({ a: 1 }), '[object Object]');
    assert.equal(reason(null), 'null');
    assert.equal(reason(42), '42');
  });
});

describe('v2 feature negotiation (x-amqp-stream-features)', () => {
  it('reads the features a handshake lists and ignores unknown tokens and spacing', () => {
    assert.deepEqual([...peerFeatures({ [FEATURES_HEADER]: 'credit, seq,warp-drive,,presence' })], ['credit', 'seq', 'presence']);
    assert.deepEqual([...peerFeatures({ [FEATURES_HEADER]: Buffer.from('seq') })], ['seq']);
  });

  it('finds no features on a v1 or 0.1.0 handshake (no header) or a garbage value', () => {
    assert.equal(peerFeatures(undefined).size, 0);
    assert.equal(peerFeatures({ [VERSION_HEADER]: 2 }).size, 0);
    assert.equal(peerFeatures({ [FEATURES_HEADER]: 42 }).size, 0);
  });

  it('uses only what both ends list', () => {
    assert.deepEqual([...commonFeatures(['credit', 'seq', 'resume'], ['seq', 'credit', 'auth'])].sort(), ['credit', 'seq']);
    assert.equal(commonFeatures([], ['seq']).size, 0);
  });

  it('sends exactly the 0.1.0 handshake headers when no feature is enabled, and never a features header on v1', () => {
    assert.deepEqual(handshakeHeaders(2), { [VERSION_HEADER]: 2 });
    assert.deepEqual(handshakeHeaders(2, []), { [VERSION_HEADER]: 2 });
    assert.deepEqual(handshakeHeaders(1, ['seq']), { [VERSION_HEADER]: 1 });
    assert.deepEqual(handshakeHeaders(2, ['credit', 'seq']), { [VERSION_HEADER]: 2, [FEATURES_HEADER]: 'credit,seq' });
  });
});

describe('v2 resume vocabulary', () => {
  const RESUME = new Set(['presence', 'credit', 'seq', 'resume'] as const);
  it('reads resume and resumed only when resume is in use; otherwise an empty message stays an end', () => {
    assert.deepEqual(classify(msg('', { [RESUME_HEADER]: 42 }), 2, RESUME), { kind: 'resume', received: 42 });
    assert.deepEqual(classify(msg('', { [RESUMED_HEADER]: '7' }), 2, RESUME), { kind: 'resumed', received: '7' });
    assert.equal(classify(msg('', { [RESUME_HEADER]: 42, [OFFSET_HEADER]: 0 }), 2, new Set(['seq'] as const)).kind, 'eof');
    assert.equal(classify(msg('', { [RESUME_HEADER]: 42 }), 1, RESUME).kind, 'eof');
    // A resume header on a data message is not a resume.
    assert.equal(classify(msg('data', { [RESUME_HEADER]: 42, [OFFSET_HEADER]: 0 }), 2, RESUME).kind, 'data');
  });

  it('flags retransmissions at their original offset', () => {
    assert.deepEqual(retransmitOptions(4096).headers, { [OFFSET_HEADER]: 4096, [RETRANSMIT_HEADER]: 1 });
    assert.equal(retransmitOptions(0).mandatory, true);
  });

  it('checks resumeGrace: seconds from 0 (off) to a day, default 30 s', () => {
    assert.equal(resolveResumeGrace(undefined), 30_000);
    assert.equal(resolveResumeGrace(0), 0);
    assert.equal(resolveResumeGrace(2.5), 2500);
    for (const bad of [-1, Number.NaN, Infinity, 86_401, '30' as unknown as number]) {
      assert.throws(() => resolveResumeGrace(bad), (err: { code?: string; message: string }) => err.code === 'ERR_INVALID_ARG' && /resumeGrace/.test(err.message));
    }
  });
});
