import { describe, expect, test } from 'vitest';
import { formatTable } from './table.js';

describe('formatTable', () => {
  test('left-aligns the first column and right-aligns the others', () => {
    const text = formatTable(
      ['strategy', 'MoE ms', 'dups'],
      [
        ['grace', '2.424', '0'],
        ['eplb-hierarchical', '10.5', '12'],
      ],
    );

    expect(text.split('\n')).toEqual([
      'strategy           MoE ms  dups',
      '-----------------  ------  ----',
      'grace               2.424     0',
      'eplb-hierarchical    10.5    12',
    ]);
  });

  test('sizes a column by its widest cell or header', () => {
    const lines = formatTable(['a', 'long header'], [['wide cell', '1']]).split('\n');

    expect(lines[0]).toBe('a          long header');
    expect(lines[1]).toBe('---------  -----------');
    expect(lines[2]).toBe('wide cell            1');
  });

  test('header and rule only without rows', () => {
    expect(formatTable(['name', 'ms'], [])).toBe('name  ms\n----  --');
  });

  test('trims trailing spaces of short rows', () => {
    const lines = formatTable(['strategy', 'ms'], [['grace']]).split('\n');

    expect(lines[2]).toBe('grace');
  });

  test('keeps every line of one table the same width', () => {
    const lines = formatTable(
      ['strategy', 'A2A ms', 'local hits'],
      [
        ['contiguous', '7.651', '12.5%'],
        ['round-robin', '7.7', '100.0%'],
      ],
    ).split('\n');

    expect(new Set(lines.map((line) => line.length)).size).toBe(1);
  });
});
