/** Jest runs the TypeScript tests through ts-jest; synthesizing stacks is slow on two cores. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.tsx?$': 'ts-jest' },
  testTimeout: 120000,
};
