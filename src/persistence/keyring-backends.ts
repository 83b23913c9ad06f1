// The backends that keep the cache in an OS keyring item (through item-store.ts), imported together when one is
// chosen: one chunk in the ESM build, so neither start loads a second file of ours (each one costs a CLI ~1 ms of
// its start here: resolve, read, compile, first-touched memory). macOS compiles the Secret Service client it does
// not use (~1 ms, beside keytar's native load).
export { createKeychainPersistence } from './keychain.js';
export { createLibsecretPersistence } from './libsecret.js';
