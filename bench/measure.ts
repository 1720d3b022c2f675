/**
 * What the benchmark measures besides time: statistics over samples, each
 * process's peak resident set (Linux /proc), and the broker's queue depth in
 * bytes for the queues of given processes (rabbitmqctl; the queues are
 * exclusive to their connections, so a passive declare from here would fail).
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const MiB = 1024 * 1024;

export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i]!;
}
export const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Peak RSS of some processes over a period: the kernel's high-water mark
 * (VmHWM, reset at the start through /proc/PID/clear_refs), or, where the
 * reset is not allowed, the largest VmRSS seen by polling every 50 ms.
 */
export class PeakRss {
  private readonly polled = new Map<number, number>();
  private readonly reset = new Set<number>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pids: number[]) {
    for (const pid of pids) {
      try {
        fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
        this.reset.add(pid);
      } catch {
        // not ours to reset (or not Linux): polling only
      }
      this.polled.set(pid, statusKiB(pid, 'VmRSS'));
    }
    this.timer = setInterval(() => this.poll(), 50);
  }

  private poll(): void {
    for (const pid of this.pids) this.polled.set(pid, Math.max(this.polled.get(pid) ?? 0, statusKiB(pid, 'VmRSS')));
  }

  /** Peak RSS in MiB per pid (NaN where unknown). */
  stop(): number[] {
    clearInterval(this.timer);
    this.poll();
    return this.pids.map((pid) => {
      const hwm = this.reset.has(pid) ? statusKiB(pid, 'VmHWM') : NaN;
      const kib = Math.max(Number.isNaN(hwm) ? 0 : hwm, this.polled.get(pid) ?? 0);
      return kib > 0 ? kib / 1024 : NaN;
    });
  }
}

async function ctlJson<T>(args: string[]): Promise<T> {
  const { stdout } = await run('rabbitmqctl', [...args, '-q', '--formatter', 'json'], { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * MiB });
  return JSON.parse(stdout) as T;
}

/**
 * Polls the broker (rabbitmqctl) for the bytes held in the queues that
 * belong to the broker connections of the processes `pids` (found by the
 * "(pid N)" in their connection names): queues they own (exclusive) or
 * consume exclusively.
 */
export class QueueDepth {
  private stopped = false;
  private readonly loop: Promise<void>;
  private started!: () => void;
  /** Resolves once the first poll is done (or polling failed): start the transfer after it. */
  readonly ready = new Promise<void>((resolve) => (this.started = resolve));
  /** Largest total bytes over the matching queues in one poll. */
  peakBytes = 0;
  polls = 0;
  error?: string;

  constructor(pids: number[]) {
    this.loop = this.run(pids)
      .catch((err: unknown) => {
        this.error = String(err instanceof Error ? err.message : err).split('\n')[0];
      })
      .finally(() => this.started());
  }

  private async run(pids: number[]): Promise<void> {
    const [conns, chans] = await Promise.all([
      ctlJson<Array<{ pid: string; client_properties: Array<[string, string, unknown]> }>>(['list_connections', 'pid', 'client_properties']),
      ctlJson<Array<{ pid: string; connection: string }>>(['list_channels', 'pid', 'connection']),
    ]);
    const ours = new Set(
      conns
        .filter((c) => c.client_properties.some(([k, , v]) => k === 'connection_name' && pids.some((p) => String(v).includes(`(pid ${p})`))))
        .map((c) => c.pid),
    );
    if (ours.size === 0) throw new Error('no broker connection of the measured processes found');
    const ourChannels = new Set(chans.filter((c) => ours.has(c.connection)).map((c) => c.pid));
    while (!this.stopped) {
      const queues = await ctlJson<Array<{ name: string; message_bytes: number; owner_pid: string; exclusive_consumer_pid: string }>>([
        'list_queues',
        'name',
        'message_bytes',
        'owner_pid',
        'exclusive_consumer_pid',
      ]);
      let total = 0;
      for (const q of queues) {
        if (ours.has(q.owner_pid) || ourChannels.has(q.exclusive_consumer_pid)) total += Number(q.message_bytes) || 0;
      }
      this.peakBytes = Math.max(this.peakBytes, total);
      this.polls++;
      this.started();
    }
  }

  /** Stop after the poll under way; resolves with the peak in bytes (NaN if no poll was made). */
  async stop(): Promise<number> {
    this.stopped = true;
    await this.loop;
    return this.polls > 1 ? this.peakBytes : NaN;
  }
}
