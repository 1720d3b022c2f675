import * as assert from 'node:assert/strict';
import { createDecipheriv, createHmac, hkdfSync } from 'node:crypto';
import {
  MIN_SECRET_BYTES,
  NONCE_BYTES,
  TAG_BYTES,
  authKey,
  checkControlTag,
  checkProof,
  controlTag,
  gcmNonce,
  handshakeProof,
  headerBytes,
  newNonce,
  open,
  sameBytes,
  seal,
  secretBytes,
  streamKeys,
  type ProofContext,
} from '../../src/stream/secure';

const S = Buffer.from('correct horse battery staple 42', 'utf8');
const ctx = (over: Partial<ProofContext> = {}): ProofContext => ({
  serverQueue: 'app-debug',
  clientQueue: 'amq.gen-client',
  listenerQueue: 'amq.gen-listener',
  nonceClient: Buffer.alloc(NONCE_BYTES, 1),
  nonceListener: Buffer.alloc(NONCE_BYTES, 2),
  ...over,
});

describe('tunnel secret cryptography (secure.ts)', () => {
  describe('secrets and keys', () => {
    it('refuses a secret shorter than 16 bytes, saying how long it must be', () => {
      assert.throws(() => secretBytes('short'), (e: Error & { code?: string }) => e.code === 'ERR_INVALID_ARG' && /5 bytes long; use at least 16/.test(e.message));
      assert.equal(secretBytes('x'.repeat(MIN_SECRET_BYTES)).length, MIN_SECRET_BYTES);
    });

    it('never puts the secret in its error message', () => {
      assert.throws(() => secretBytes('hunter2-secret'), (e: Error) => !e.message.includes('hunter2'));
    });

    it('derives K_auth as HKDF-SHA256(S, "amqp-tunnel v2", "auth")', () => {
      const expected = Buffer.from(hkdfSync('sha256', S, 'amqp-tunnel v2', 'auth', 32));
      assert.deepEqual(authKey(S), expected);
      assert.notDeepEqual(authKey(Buffer.concat([S, Buffer.from('!')])), expected);
    });

    it('derives four different keys per stream, and other keys for other nonces', () => {
      const k = streamKeys(S, Buffer.alloc(16, 1), Buffer.alloc(16, 2));
      const all = [k.c2s.enc, k.c2s.mac, k.s2c.enc, k.s2c.mac].map((b) => b.toString('hex'));
      assert.equal(new Set(all).size, 4);
      assert.deepEqual(k.c2s.enc, Buffer.from(hkdfSync('sha256', S, Buffer.concat([Buffer.alloc(16, 1), Buffer.alloc(16, 2)]), 'c2s', 32)));
      const other = streamKeys(S, Buffer.alloc(16, 1), Buffer.alloc(16, 3));
      assert.notDeepEqual(other.c2s.enc, k.c2s.enc);
      assert.notDeepEqual(other.s2c.enc, k.s2c.enc);
    });

    it('makes a fresh 16-byte nonce each time', () => {
      const a = newNonce();
      const b = newNonce();
      assert.equal(a.length, NONCE_BYTES);
      assert.notDeepEqual(a, b);
    });
  });

  describe('handshake proofs', () => {
    const k = authKey(S);

    it('accepts the proof made for the same role and stream', () => {
      assert.ok(checkProof(k, 'client', ctx(), handshakeProof(k, 'client', ctx())));
      assert.ok(checkProof(k, 'listener', ctx(), handshakeProof(k, 'listener', ctx())));
    });

    it('is HMAC-SHA256(K_auth, role | Q | Cq | Sq | Nc | Ns) with | a zero byte, as docs/protocol.md says', () => {
      const c = ctx();
      const z = Buffer.alloc(1);
      const data = Buffer.concat([
        Buffer.from('listener'), z, Buffer.from(c.serverQueue), z, Buffer.from(c.clientQueue), z, Buffer.from(c.listenerQueue), z, c.nonceClient, z, c.nonceListener,
      ]);
      assert.deepEqual(handshakeProof(k, 'listener', c), createHmac('sha256', k).update(data).digest());
    });

    it('refuses a proof reflected from the other role', () => {
      assert.equal(checkProof(k, 'client', ctx(), handshakeProof(k, 'listener', ctx())), false);
      assert.equal(checkProof(k, 'listener', ctx(), handshakeProof(k, 'client', ctx())), false);
    });

    it('refuses a proof made with another secret', () => {
      const wrong = authKey(Buffer.from('another secret of enough length'));
      assert.equal(checkProof(k, 'client', ctx(), handshakeProof(wrong, 'client', ctx())), false);
    });

    for (const [field, value] of [
      ['serverQueue', 'other-tunnel'],
      ['clientQueue', 'amq.gen-other'],
      ['listenerQueue', 'amq.gen-other'],
      ['nonceClient', Buffer.alloc(NONCE_BYTES, 9)],
      ['nonceListener', Buffer.alloc(NONCE_BYTES, 9)],
    ] as const) {
      it(`refuses a recorded proof replayed on a stream with another ${field}`, () => {
        const recorded = handshakeProof(k, 'client', ctx());
        assert.equal(checkProof(k, 'client', ctx({ [field]: value }), recorded), false);
      });
    }

    it('cannot be fooled by moving bytes between adjacent fields', () => {
      const a = ctx({ serverQueue: 'ab', clientQueue: 'c' });
      const b = ctx({ serverQueue: 'a', clientQueue: 'bc' });
      assert.equal(checkProof(k, 'client', b, handshakeProof(k, 'client', a)), false);
    });

    it('compares in constant time and says false for a different length', () => {
      assert.equal(sameBytes(Buffer.from('abc'), Buffer.from('abcd')), false);
      assert.equal(sameBytes(Buffer.from('abc'), Buffer.from('abc')), true);
      assert.equal(checkProof(k, 'client', ctx(), Buffer.alloc(5)), false);
    });
  });

  describe('AES-256-GCM of stream data', () => {
    const keys = streamKeys(S, Buffer.alloc(16, 1), Buffer.alloc(16, 2));
    const key = keys.c2s.enc;
    const text = Buffer.from('Runtime.evaluate({expression: "process.exit()"})');

    it('puts the offset into the last 8 bytes of the 12-byte nonce', () => {
      assert.equal(gcmNonce(0).toString('hex'), '000000000000000000000000');
      assert.equal(gcmNonce(0x0102030405).toString('hex'), '000000000000000102030405');
      assert.throws(() => gcmNonce(-1));
      assert.throws(() => gcmNonce(1.5));
    });

    it('round-trips, and the body is ciphertext plus a 16-byte tag with no plaintext in it', () => {
      const sealed = seal(key, 1000, text);
      assert.equal(sealed.length, text.length + TAG_BYTES);
      assert.equal(sealed.includes(Buffer.from('Runtime')), false);
      assert.deepEqual(open(key, 1000, sealed), text);
    });

    it('is AES-256-GCM with AAD "data" | offset, so another implementation can open it', () => {
      const sealed = seal(key, 5, text);
      const d = createDecipheriv('aes-256-gcm', key, Buffer.from('000000000000000000000005', 'hex'));
      d.setAAD(Buffer.concat([Buffer.from('data'), Buffer.alloc(1), Buffer.from('0000000000000005', 'hex')]));
      d.setAuthTag(sealed.subarray(-TAG_BYTES));
      assert.deepEqual(Buffer.concat([d.update(sealed.subarray(0, -TAG_BYTES)), d.final()]), text);
    });

    it('detects a modified message (any flipped bit, in ciphertext or tag)', () => {
      const sealed = seal(key, 0, text);
      for (const i of [0, 10, sealed.length - TAG_BYTES - 1, sealed.length - TAG_BYTES, sealed.length - 1]) {
        const bad = Buffer.from(sealed);
        bad[i]! ^= 0x01;
        assert.throws(() => open(key, 0, bad), (e: Error & { code?: string }) => e.code === 'ECONNRESET' && /protocol error: .*does not authenticate/.test(e.message));
      }
    });

    it('detects a replayed message (the same body again at the next offset)', () => {
      const first = seal(key, 0, text);
      assert.throws(() => open(key, text.length, first), /protocol error/);
    });

    it('detects reordered messages (each opens only at its own offset)', () => {
      const a = seal(key, 0, Buffer.from('first '));
      const b = seal(key, 6, Buffer.from('second'));
      assert.throws(() => open(key, 0, b), /protocol error/);
      assert.throws(() => open(key, 6, a), /protocol error/);
    });

    it('detects an injected message (sealed under another key: the other direction, another stream, or none)', () => {
      assert.throws(() => open(key, 0, seal(keys.s2c.enc, 0, text)), /protocol error/);
      const otherStream = streamKeys(S, Buffer.alloc(16, 1), Buffer.alloc(16, 3));
      assert.throws(() => open(key, 0, seal(otherStream.c2s.enc, 0, text)), /protocol error/);
      assert.throws(() => open(key, 0, Buffer.concat([text, Buffer.alloc(TAG_BYTES)])), /protocol error/);
      assert.throws(() => open(key, 0, Buffer.alloc(3)), /too short/);
      assert.throws(() => open(key, 0, Buffer.alloc(TAG_BYTES)), /too short/);
    });
  });

  describe('control message tags', () => {
    const { c2s, s2c } = streamKeys(S, Buffer.alloc(16, 1), Buffer.alloc(16, 2));

    it('accepts the tag of the same kind and value only', () => {
      const tag = controlTag(c2s.mac, 'grant', '65536');
      assert.ok(checkControlTag(c2s.mac, 'grant', '65536', tag));
      assert.equal(checkControlTag(c2s.mac, 'grant', '65537', tag), false, 'altered value');
      assert.equal(checkControlTag(c2s.mac, 'reset', '65536', tag), false, 'another kind');
      assert.equal(checkControlTag(c2s.enc, 'grant', '65536', tag), false, 'the encryption key');
      assert.deepEqual(tag, createHmac('sha256', c2s.mac).update(Buffer.from('grant\x0065536', 'latin1')).digest());
      assert.equal(checkControlTag(s2c.mac, 'grant', '65536', tag), false, 'the other direction');
    });
  });

  describe('base64 header values', () => {
    it('decodes exactly the expected length and refuses anything else', () => {
      const n = Buffer.alloc(16, 7);
      assert.deepEqual(headerBytes(n.toString('base64'), 16), n);
      assert.deepEqual(headerBytes(Buffer.from(n.toString('base64')), 16), n);
      assert.equal(headerBytes(Buffer.alloc(15).toString('base64'), 16), undefined);
      assert.equal(headerBytes('not base64!', 16), undefined);
      assert.equal(headerBytes(undefined, 16), undefined);
      assert.equal(headerBytes(42, 16), undefined);
    });
  });
});
