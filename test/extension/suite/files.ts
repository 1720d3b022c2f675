/** Which compiled test files a session runs (shared by the suite's entry and the runner; no vscode import). */

/**
 * The test files of a session, in the order they run: kept.test first, so it
 * sees the window as it opened (the extension activated by VS Code at
 * startup, not by a test).
 */
export function suiteFiles(all: string[], untrusted: boolean): string[] {
  const first = (f: string): number => (f.startsWith('kept.') ? 0 : 1);
  return all
    .filter((f) => f.endsWith('.test.js'))
    .filter((f) => (untrusted ? f.startsWith('untrusted') : !f.startsWith('untrusted')))
    // SUITE_FILES=published,tunnels: only the files whose names contain one of these (while iterating; not under CI).
    .filter((f) => !process.env.SUITE_FILES || !!process.env.CI || process.env.SUITE_FILES.split(',').some((x) => f.includes(x)))
    .sort((a, b) => first(a) - first(b) || a.localeCompare(b));
}
