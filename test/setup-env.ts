import { inject } from 'vitest';

// Every test worker (and every child it spawns) talks to the private Secret Service only.
Object.assign(process.env, inject('keyringEnv'));
