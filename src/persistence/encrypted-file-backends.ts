// The backends that keep an encrypted cache file (through encrypted-file.ts), imported together when one is chosen:
// one chunk in the ESM build, so neither start loads a second file of ours (see keyring-backends.ts).
export { createDpapiPersistence } from './dpapi-file.js';
export { createSafeStoragePersistence } from './safe-storage.js';
