/**
 * Coalesces small writes and splits large ones. A debugger protocol writes
 * many small frames; sending each as its own AMQP message costs a broker
 * round of work per frame. Writes made close together are gathered and
 * sent as one message, and no message is larger than `maxMessageSize`.
 */
export class MessagePacker {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(readonly maxMessageSize: number) {
    if (!Number.isInteger(maxMessageSize) || maxMessageSize < 1) {
      throw new RangeError(`maxMessageSize must be a positive integer, got ${maxMessageSize}`);
    }
  }

  /** Bytes waiting to be sent. */
  get pending(): number {
    return this.size;
  }

  /**
   * Add a chunk. Returns the full messages that are ready now (each exactly
   * `maxMessageSize` bytes); the remainder waits for `flush()`.
   */
  add(chunk: Buffer): Buffer[] {
    const out: Buffer[] = [];
    let rest = chunk;
    while (rest.length > 0) {
      const room = this.maxMessageSize - this.size;
      const take = rest.length <= room ? rest : rest.subarray(0, room);
      this.chunks.push(take);
      this.size += take.length;
      rest = rest.subarray(take.length);
      if (this.size === this.maxMessageSize) out.push(this.take());
    }
    return out;
  }

  /** Everything pending as one message, or undefined when nothing is pending. */
  flush(): Buffer | undefined {
    return this.size === 0 ? undefined : this.take();
  }

  private take(): Buffer {
    const msg = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    this.size = 0;
    return msg;
  }
}
