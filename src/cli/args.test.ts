import { describe, expect, test } from 'vitest';
import { UsageError } from '../errors.js';
import { nonNegativeInteger, oneOf, parseFlags, positiveInteger } from './args.js';

const OPTIONS = {
  topology: { type: 'string' },
  output: { type: 'string', short: 'o' },
  verbose: { type: 'boolean' },
} as const;

/** Returns what `run` throws, so a test can assert on the error's class and message separately. */
function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}

describe('parseFlags', () => {
  test('parses long, short and boolean flags', () => {
    const { values } = parseFlags('plan', ['--topology', '4x8', '-o', 'plan.json', '--verbose'], OPTIONS);

    expect(values.topology).toBe('4x8');
    expect(values.output).toBe('plan.json');
    expect(values.verbose).toBe(true);
  });

  test('parses --flag=value', () => {
    const { values } = parseFlags('plan', ['--topology=2x4'], OPTIONS);

    expect(values.topology).toBe('2x4');
    expect(values.output).toBeUndefined();
  });

  test.each([
    { argv: ['--bogus'], named: '--bogus' },
    { argv: ['stray'], named: 'stray' },
    { argv: ['--topology'], named: '--topology' },
  ] as const)('rejects $argv naming $named', ({ argv, named }) => {
    const error = thrownBy(() => parseFlags('plan', argv, OPTIONS));

    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).code).toBe('USAGE');
    expect((error as UsageError).message).toContain(named);
    expect((error as UsageError).message).toContain('grace-moe plan --help');
  });
});

describe('positiveInteger', () => {
  test('returns the fallback without a value', () => {
    expect(positiveInteger('--sample', undefined, 8192)).toBe(8192);
  });

  test.each([
    ['1', 1],
    ['9', 9],
    ['8192', 8192],
  ] as const)('parses %s', (text, expected) => {
    expect(positiveInteger('--sample', text, 1)).toBe(expected);
  });

  test.each(['0', '-1', '1.5', 'abc', '', 'NaN', 'Infinity'])('rejects "%s"', (text) => {
    const error = thrownBy(() => positiveInteger('--sample', text, 1));

    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toBe(`--sample must be a positive integer, got "${text}"`);
  });
});

describe('nonNegativeInteger', () => {
  test('returns the fallback without a value', () => {
    expect(nonNegativeInteger('--redundant-slots', undefined, 1)).toBe(1);
  });

  test.each([
    ['0', 0],
    ['2', 2],
  ] as const)('parses %s', (text, expected) => {
    expect(nonNegativeInteger('--redundant-slots', text, 1)).toBe(expected);
  });

  // An empty value (`--redundant-slots=`) is a typing slip, not a request for zero.
  test.each(['-1', '0.5', 'two', ''])('rejects "%s"', (text) => {
    const error = thrownBy(() => nonNegativeInteger('--redundant-slots', text, 1));

    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toBe(`--redundant-slots must be a non-negative integer, got "${text}"`);
  });
});

describe('oneOf', () => {
  const FORMATS = ['table', 'json'] as const;

  test('returns the fallback without a value', () => {
    expect(oneOf('--format', undefined, FORMATS, 'table')).toBe('table');
  });

  test('accepts a listed choice', () => {
    expect(oneOf('--format', 'json', FORMATS, 'table')).toBe('json');
  });

  test('rejects an unlisted value, listing the choices', () => {
    const error = thrownBy(() => oneOf('--format', 'xml', FORMATS, 'table'));

    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toBe('--format must be one of table, json, got "xml"');
  });

  test('matches case-sensitively', () => {
    expect(() => oneOf('--format', 'JSON', FORMATS, 'table')).toThrow(UsageError);
  });
});
