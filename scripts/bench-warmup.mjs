// Imported first by the import-time benchmark, so that it measures the package and not the start-up of
// Node's ES module loader (an app's own entry module has already paid that).
export {};
