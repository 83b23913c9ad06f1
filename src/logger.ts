import type { NodeSystemOptions } from '@azure/msal-node';

/** msal-node's logger options (`system.loggerOptions`): the same object can be passed to both. */
export type LoggerOptions = NonNullable<NodeSystemOptions['loggerOptions']>;

// msal-common's LogLevel values; copied as numbers so that importing this package does not load msal-node.
export const LogLevel = { Error: 0, Warning: 1, Info: 2, Verbose: 3, Trace: 4 } as const;
type Level = (typeof LogLevel)[keyof typeof LogLevel];

/** The logger every piece of this package writes through. Messages never contain token text. */
export interface Logger {
  error(message: string): void;
  warning(message: string): void;
  info(message: string): void;
  verbose(message: string): void;
  /** Lines that may identify a person (paths with a user name, account names); sent only with piiLoggingEnabled. */
  verbosePii(message: string): void;
}

const prefix = '[msal-keychain-cache] ';

/** Builds a logger from msal-node's `LoggerOptions`. Without a callback, warnings and errors go to stderr. */
export function createLogger(options: LoggerOptions | undefined): Logger {
  const callback = options?.loggerCallback;
  const maxLevel = (options?.logLevel ?? LogLevel.Info) as Level;
  const pii = options?.piiLoggingEnabled === true;
  const emit = (level: Level, message: string, containsPii: boolean) => {
    if (level > maxLevel || (containsPii && !pii)) return;
    if (callback) {
      callback(level as never, prefix + message, containsPii);
    } else if (level <= LogLevel.Warning) {
      process.emitWarning(message, { code: 'MSAL_KEYCHAIN_CACHE' });
    }
  };
  return {
    error: (message) => emit(LogLevel.Error, message, false),
    warning: (message) => emit(LogLevel.Warning, message, false),
    info: (message) => emit(LogLevel.Info, message, false),
    verbose: (message) => emit(LogLevel.Verbose, message, false),
    verbosePii: (message) => emit(LogLevel.Verbose, message, true),
  };
}
