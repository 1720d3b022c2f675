/**
 * Waiting for something that may never finish (a broker that blocked a
 * connection reads nothing from it) without waiting forever.
 */

/**
 * Resolves with `p`'s value, or with `fallback` once `ms` have passed,
 * whichever comes first. The timer never holds the process open and is
 * cleared when `p` settles first. A rejection of `p` rejects (callers
 * that do not care add `.catch`).
 */
export async function settleWithin<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<T>((resolve) => {
        timer = setTimeout(() => resolve(fallback), ms);
        timer.unref();
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
