/**
 * The bytes every bulk transfer of the benchmark carries: a deterministic
 * pseudo-random block (AES-256-CTR of zeros) repeated. Its length is not a
 * power of two, so a message or chunk boundary never lines up with a block
 * boundary and a lost, duplicated or reordered message changes the SHA-256.
 */
import { createCipheriv, createHash } from 'node:crypto';

export const BLOCK_LENGTH = 1024 * 1024 + 4099;
export const BLOCK: Buffer = (() => {
  const c = createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16, 3));
  return Buffer.concat([c.update(Buffer.alloc(BLOCK_LENGTH)), c.final()]);
})();

/** The piece of the pattern at stream offset `offset`, at most `max` bytes, never crossing a block end. */
export function patternAt(offset: number, max: number): Buffer {
  const start = offset % BLOCK_LENGTH;
  return BLOCK.subarray(start, Math.min(BLOCK_LENGTH, start + max));
}

const digests = new Map<number, string>();
/** SHA-256 (hex) of the first `n` bytes of the pattern. */
export function patternDigest(n: number): string {
  let d = digests.get(n);
  if (d === undefined) {
    const h = createHash('sha256');
    for (let off = 0; off < n; ) {
      const piece = patternAt(off, n - off);
      h.update(piece);
      off += piece.length;
    }
    d = h.digest('hex');
    digests.set(n, d);
  }
  return d;
}

/** Write `n` bytes of the pattern to `w`, honouring backpressure; resolves after the last write was accepted. */
export async function writePattern(
  w: { write(b: Buffer): boolean; once(e: 'drain' | 'close', f: () => void): unknown; off(e: 'drain' | 'close', f: () => void): unknown; destroyed: boolean },
  n: number,
  chunk = 256 * 1024,
): Promise<void> {
  for (let off = 0; off < n; ) {
    const piece = patternAt(off, Math.min(chunk, n - off));
    off += piece.length;
    if (!w.write(piece)) {
      if (w.destroyed) throw new Error('the connection closed during the transfer');
      await new Promise<void>((resolve) => {
        const done = (): void => {
          w.off('drain', done);
          w.off('close', done);
          resolve();
        };
        w.once('drain', done);
        w.once('close', done);
      });
    }
  }
}
