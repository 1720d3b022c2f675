/**
 * Summarise a V8 CPU profile of the CLI (node --cpu-prof, or npm run bench --
 * --cpu-prof DIR): self time by function and by part (amqplib, our stream
 * library, the tunnel, node internals, GC, idle). The CLI is one esbuild
 * bundle; its `// node_modules/...` and `// src/...` section comments tell
 * which part a line belongs to.
 *
 *   node --import tsx bench/profile.ts FILE.cpuprofile [TOP]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const sectionsCache = new Map<string, Array<[number, string]>>();
/** [first line (0-based), module] of each section of an esbuild bundle. */
function sections(file: string): Array<[number, string]> {
  let s = sectionsCache.get(file);
  if (!s) {
    s = [];
    try {
      const lines = fs.readFileSync(file, 'utf8').split('\n');
      lines.forEach((l, i) => {
        const m = /^\/\/ (?:\S*?\/)?((?:node_modules|src)\/\S+)$/.exec(l);
        if (m) s!.push([i, m[1]!]);
      });
    } catch {
      // not a readable bundle
    }
    sectionsCache.set(file, s);
  }
  return s;
}

function moduleOf(url: string, line: number): string {
  if (url === '') return '';
  if (url.startsWith('node:')) return url;
  const file = url.replace(/^file:\/\//, '');
  const secs = sections(file);
  let mod = path.basename(file);
  for (const [start, m] of secs) {
    if (start <= line) mod = m;
    else break;
  }
  return mod;
}

function part(fn: string, mod: string): string {
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(idle)') return 'idle';
  if (fn === '(program)') return 'program (native, not attributed)';
  if (mod.startsWith('node_modules/amqplib')) return 'amqplib';
  if (mod.startsWith('node_modules/')) return mod.split('/').slice(0, 2).join('/');
  if (mod.startsWith('src/')) return mod.split('/').slice(0, 2).join('/');
  if (mod.startsWith('node:')) return `node internals (${mod.replace(/^node:internal\//, '').split('/')[0]})`;
  return fn.startsWith('(') ? fn : `other (${mod || 'native'})`;
}

export function summarise(file: string, top = 25): string {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fns = new Map<string, number>();
  const parts = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const mod = moduleOf(n.callFrame.url, n.callFrame.lineNumber);
    const key = `${n.callFrame.functionName || '(anonymous)'}  ${mod}${mod && !mod.startsWith('node:') ? `:${n.callFrame.lineNumber + 1}` : ''}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const pt = part(n.callFrame.functionName, mod);
    parts.set(pt, (parts.get(pt) ?? 0) + us);
  }
  const busy = total - (parts.get('idle') ?? 0);
  const pct = (us: number, of: number): string => `${((100 * us) / of).toFixed(1).padStart(5)}%`;
  const out = [`${path.basename(file)}: ${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(2)} s busy (not idle)`, '', 'self time by part (% of busy):'];
  for (const [k, v] of [...parts].sort((a, b) => b[1] - a[1])) if (k !== 'idle') out.push(`  ${pct(v, busy)}  ${(v / 1e3).toFixed(0).padStart(7)} ms  ${k}`);
  out.push('', `top ${top} functions by self time (% of busy):`);
  for (const [k, v] of [...fns].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    out.push(`  ${pct(v, busy)}  ${(v / 1e3).toFixed(0).padStart(7)} ms  ${k}`);
  }
  return out.join('\n');
}

if (require.main === module) {
  const [file, top] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node --import tsx bench/profile.ts FILE.cpuprofile [TOP]');
    process.exitCode = 2;
  } else console.log(summarise(file, top ? Number(top) : 25));
}
