/**
 * The logger interface the library and tunnels write to. The CLI prints it,
 * the extension sends it to a LogOutputChannel; the default drops everything.
 * Messages never carry secrets (URLs are scrubbed before they get here).
 */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/** A logger that puts `prefix` before every message ("tunnel x > conn #7"). */
export function prefixed(logger: Logger, prefix: string): Logger {
  return {
    debug: (m) => logger.debug(`${prefix} ${m}`),
    info: (m) => logger.info(`${prefix} ${m}`),
    warn: (m) => logger.warn(`${prefix} ${m}`),
    error: (m) => logger.error(`${prefix} ${m}`),
  };
}
