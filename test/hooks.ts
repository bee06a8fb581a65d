// Mocha root hooks: a test that leaves a child process behind fails.
import { killAllGroups, killNonFixtureGroups, leakedNonFixtures, leakedProcesses } from './fixtures/processes.js';

export const mochaHooks = {
  afterEach(this: Mocha.Context): void {
    const leaked = leakedNonFixtures();
    if (leaked.length > 0) {
      killNonFixtureGroups();
      throw new Error(`test left child processes behind: ${leaked.join(', ')}`);
    }
  },
  afterAll(): void {
    const leaked = leakedProcesses();
    if (leaked.length > 0) {
      killAllGroups();
      throw new Error(`suite left child processes behind (fixtures not stopped): ${leaked.join(', ')}`);
    }
  },
};
