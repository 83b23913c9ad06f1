// The `keepassxc` project: the same suites on a second, independent Secret Service implementation.
import type { TestProject } from 'vitest/node';
import { startSecretServiceFor } from './global-setup.js';

export default (project: TestProject) => startSecretServiceFor(project, 'keepassxc');
