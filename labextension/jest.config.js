/**
 * Unit tests of the extension's logic (src/model.ts) and of its Chinese labels.
 * ts-jest compiles each file on its own (isolatedModules): `tsc` type-checks the sources.
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/src'],
  testRegex: 'src/__tests__/.*\\.spec\\.ts$',
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      {
        tsconfig: {
          module: 'commonjs',
          types: ['jest', 'node'],
          strict: true,
          esModuleInterop: true,
          isolatedModules: true
        }
      }
    ]
  }
};
