import { describe, expect, test } from 'vitest';
import {
  barChart,
  colorScale,
  escapeXml,
  formatTickLabel,
  heatmap,
  lineChart,
  niceTicks,
  PALETTE,
  seriesStyle,
  svgDocument,
  type LineSeries,
} from './svg.js';

function count(haystack: string, needle: string | RegExp): number {
  const pattern = typeof needle === 'string' ? new RegExp(needle.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g') : needle;
  return [...haystack.matchAll(pattern)].length;
}

describe('escapeXml', () => {
  test.each([
    ['a<b>', 'a&lt;b&gt;'],
    ['Tom & "Jerry"', 'Tom &amp; &quot;Jerry&quot;'],
    ["it's", 'it&#39;s'],
    ['&amp;', '&amp;amp;'],
    ['plain', 'plain'],
  ] as const)('escapes %j', (input, expected) => {
    expect(escapeXml(input)).toBe(expected);
  });
});

describe('niceTicks', () => {
  test.each([
    { low: 0, high: 9.3, target: 5, minStep: 0, values: [0, 2, 4, 6, 8, 10], step: 2 },
    { low: 0, high: 1, target: 5, minStep: 0, values: [0, 0.2, 0.4, 0.6, 0.8, 1], step: 0.2 },
    { low: 0, high: 0, target: 5, minStep: 0, values: [0, 0.2, 0.4, 0.6, 0.8, 1], step: 0.2 },
    { low: -3, high: 7, target: 5, minStep: 0, values: [-4, -2, 0, 2, 4, 6, 8], step: 2 },
    { low: 0.003, high: 0.047, target: 5, minStep: 0, values: [0, 0.01, 0.02, 0.03, 0.04, 0.05], step: 0.01 },
    { low: 0, high: 2, target: 8, minStep: 1, values: [0, 1, 2], step: 1 },
    { low: 0, high: 25, target: 8, minStep: 1, values: [0, 5, 10, 15, 20, 25], step: 5 },
    { low: 0, high: 730_000, target: 5, minStep: 0, values: [0, 1, 2, 3, 4, 5, 6, 7, 8].map((k) => k * 100_000), step: 100_000 },
  ])('covers [$low, $high] with step $step', ({ low, high, target, minStep, values, step }) => {
    const ticks = niceTicks(low, high, target, minStep);
    expect(ticks.values).toEqual(values);
    expect(ticks.step).toBeCloseTo(step, 12);
    expect(ticks.min).toBe(values[0]);
    expect(ticks.max).toBe(values[values.length - 1]);
  });

  test('steps are 1, 2 or 5 times a power of ten', () => {
    for (const high of [0.07, 0.9, 3, 17, 42, 99, 123, 4567, 1e7]) {
      const { step } = niceTicks(0, high);
      const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
      expect([1, 2, 5]).toContain(Math.round(mantissa * 1e9) / 1e9);
    }
  });

  test('non-finite bounds give [0, 1]', () => {
    const ticks = niceTicks(Number.NaN, Number.POSITIVE_INFINITY);
    expect(ticks.min).toBe(0);
    expect(ticks.max).toBe(1);
  });
});

describe('formatTickLabel', () => {
  test.each([
    { value: 0.30000000000000004, ticks: { min: 0, max: 1, step: 0.1 }, expected: '0.3' },
    { value: 20_000, ticks: { min: 0, max: 40_000, step: 5_000 }, expected: '20k' },
    { value: 0, ticks: { min: 0, max: 40_000, step: 5_000 }, expected: '0' },
    { value: 2_500_000, ticks: { min: 0, max: 3_000_000, step: 500_000 }, expected: '2.5M' },
    { value: 3e9, ticks: { min: 0, max: 5e9, step: 1e9 }, expected: '3G' },
    { value: 999, ticks: { min: 0, max: 1000, step: 200 }, expected: '1.0k' },
    { value: -0, ticks: { min: 0, max: 10, step: 1 }, expected: '0' },
    { value: -0.0000001, ticks: { min: 0, max: 2, step: 0.5 }, expected: '0.0' },
    { value: 15, ticks: { min: 0, max: 20, step: 5 }, expected: '15' },
  ] as const)('formats $value on [$ticks.min, $ticks.max] as $expected', ({ value, ticks, expected }) => {
    expect(formatTickLabel(value, ticks)).toBe(expected);
  });
});

describe('seriesStyle', () => {
  test('first palette cycle has distinct solid colours', () => {
    const styles = PALETTE.map((_, index) => seriesStyle(index));
    expect(new Set(styles.map((style) => style.color)).size).toBe(PALETTE.length);
    expect(styles.every((style) => style.dash === '')).toBe(true);
  });

  test('second cycle reuses colours with a dash', () => {
    expect(seriesStyle(PALETTE.length)).toEqual({ color: PALETTE[0], dash: '6 3' });
    expect(seriesStyle(2 * PALETTE.length + 1)).toEqual({ color: PALETTE[1], dash: '2 2' });
  });

  test('invalid index falls back to the first colour', () => {
    expect(seriesStyle(-1)).toEqual({ color: PALETTE[0], dash: '' });
    expect(seriesStyle(Number.NaN)).toEqual({ color: PALETTE[0], dash: '' });
  });
});

describe('lineChart', () => {
  const base = { title: 'Traffic', xLabel: 'layer', yLabel: 'MB' };
  const threeSeries: LineSeries[] = [
    { name: 'a', points: [[0, 1], [1, 2], [2, 3]] },
    { name: 'b', points: [[0, 3], [1, 2], [2, 1]] },
    { name: 'c', points: [[0, 0], [1, 0.5], [2, 4]] },
  ];

  test('draws one path per series', () => {
    const svg = lineChart({ ...base, series: threeSeries });
    expect(count(svg, '<path class="series"')).toBe(3);
    expect(count(svg, '<g class="legend-item">')).toBe(3);
  });

  test('colours series by colorIndex', () => {
    const svg = lineChart({ ...base, series: [{ name: 'x', points: [[0, 1], [1, 2]], colorIndex: 3 }] });
    expect(svg).toContain(`stroke="${PALETTE[3]}"`);
    expect(svg).not.toContain(`stroke="${PALETTE[0]}"`);
  });

  test('output is deterministic', () => {
    expect(lineChart({ ...base, series: threeSeries })).toBe(lineChart({ ...base, series: threeSeries }));
  });

  test('empty series list shows no data', () => {
    const svg = lineChart({ ...base, series: [] });
    expect(count(svg, '<path')).toBe(0);
    expect(svg).toContain('>no data</text>');
    expect(svg).not.toContain('NaN');
  });

  test('series without points keeps its legend entry only', () => {
    const svg = lineChart({ ...base, series: [{ name: 'empty', points: [] }, { name: 'full', points: [[0, 1], [1, 1]] }] });
    expect(count(svg, '<path class="series"')).toBe(1);
    expect(svg).toContain('>empty</text>');
  });

  test('single point gets a marker', () => {
    const svg = lineChart({ ...base, series: [{ name: 'one', points: [[4, 2]] }] });
    expect(count(svg, '<path class="series"')).toBe(1);
    expect(count(svg, '<circle class="point"')).toBe(1);
    expect(svg).not.toContain('NaN');
    expect(svg).not.toContain('Infinity');
  });

  test('NaN points are skipped and break the line', () => {
    const points: [number, number][] = [[0, 1], [1, Number.NaN], [2, 3], [3, 4], [Number.NaN, 5]];
    const svg = lineChart({ ...base, series: [{ name: 'gappy', points }] });
    const d = /<path class="series" d="([^"]*)"/.exec(svg)?.[1] ?? '';
    expect(count(d, /M/g)).toBe(2);
    expect(count(d, /L/g)).toBe(1);
    expect(svg).not.toContain('NaN');
  });

  test('all-zero values keep a unit y range', () => {
    const svg = lineChart({ ...base, series: [{ name: 'zero', points: [[0, 0], [1, 0], [2, 0]] }] });
    expect(svg).not.toContain('NaN');
    expect(svg).toContain('>1.0</text>');
    expect(svg).toContain('>0.0</text>');
  });

  test('escapes names and titles', () => {
    const svg = lineChart({ ...base, title: 'a<b>', series: [{ name: '<b>&"', points: [[0, 1], [1, 2]] }] });
    expect(svg).toContain('&lt;b&gt;&amp;&quot;');
    expect(svg).not.toContain('<b>');
  });

  test('integer x ticks skip fractions', () => {
    const svg = lineChart({ ...base, xIntegerTicks: true, series: [{ name: 's', points: [[0, 1], [1, 2], [2, 3]] }] });
    const xAxis = /<g class="x-axis">(.*?)<\/g>/.exec(svg)?.[1] ?? '';
    const labels = [...xAxis.matchAll(/>([^<]+)<\/text>/g)].map((match) => match[1]);
    expect(labels).toEqual(['0', '1', '2']);
  });

  test('standalone document adds the namespace', () => {
    const document = svgDocument(lineChart({ ...base, series: threeSeries }));
    expect(document.startsWith('<?xml')).toBe(true);
    expect(document).toContain('<svg xmlns="http://www.w3.org/2000/svg" class="chart"');
  });
});

describe('barChart', () => {
  const base = { title: 'Time', yLabel: 'ms' };

  test('draws one bar per finite value', () => {
    const svg = barChart({
      ...base,
      categories: ['x', 'y', 'z'],
      series: [
        { name: 'flat', values: [1, 2, 3] },
        { name: 'hier', values: [0.5, Number.NaN, 1] },
      ],
    });
    expect(count(svg, '<rect class="bar"')).toBe(5);
    expect(svg).toContain('<title>hier, z: 1</title>');
    expect(svg).not.toContain('NaN');
  });

  test('missing values draw no bar', () => {
    const svg = barChart({ ...base, categories: ['x', 'y'], series: [{ name: 's', values: [1] }] });
    expect(count(svg, '<rect class="bar"')).toBe(1);
  });

  test('all zeros give zero-height bars', () => {
    const svg = barChart({ ...base, categories: ['x', 'y'], series: [{ name: 's', values: [0, 0] }] });
    expect(count(svg, /<rect class="bar"[^>]*height="0"/g)).toBe(2);
    expect(svg).not.toContain('NaN');
  });

  test('long category labels are rotated', () => {
    const categories = Array.from({ length: 10 }, (_, index) => `a-rather-long-strategy-name-${index}`);
    const svg = barChart({ ...base, categories, series: [{ name: 's', values: categories.map((_, index) => index) }] });
    expect(count(svg, 'rotate(-40')).toBe(10);
  });

  test('empty chart shows no data', () => {
    const svg = barChart({ ...base, categories: [], series: [] });
    expect(svg).toContain('>no data</text>');
    expect(svg).not.toContain('NaN');
  });
});

describe('heatmap', () => {
  const base = { title: 'Load', valueLabel: 'share' };

  test('has one cell per row and column', () => {
    const svg = heatmap({
      ...base,
      rows: ['l0', 'l1', 'l2'],
      columns: ['g0', 'g1', 'g2', 'g3'],
      values: [
        [1, 2, 3, 4],
        [4, 3, 2, 1],
        [1, 1, 1, 1],
      ],
    });
    expect(count(svg, '<rect class="cell"')).toBe(12);
    expect(svg).toContain('<title>l1, g0: 4</title>');
  });

  test('extremes take the ends of the scale', () => {
    const svg = heatmap({ ...base, rows: ['r'], columns: ['lo', 'hi'], values: [[2, 10]] });
    expect(svg).toContain(`fill="${colorScale(0)}" stroke="#ffffff" stroke-width="1"><title>r, lo: 2</title>`);
    expect(svg).toContain(`fill="${colorScale(1)}" stroke="#ffffff" stroke-width="1"><title>r, hi: 10</title>`);
  });

  test('NaN and missing cells show no data', () => {
    const svg = heatmap({ ...base, rows: ['a', 'b'], columns: ['x', 'y'], values: [[Number.NaN, 1], [2]] });
    expect(count(svg, '<rect class="cell"')).toBe(4);
    expect(count(svg, ': no data</title>')).toBe(2);
    expect(svg).not.toContain('NaN');
  });

  test('all-zero values render without NaN', () => {
    const svg = heatmap({ ...base, rows: ['a'], columns: ['x', 'y'], values: [[0, 0]] });
    expect(svg).not.toContain('NaN');
    expect(svg).toContain('>all 0</text>');
  });

  test('empty heatmap has no cells', () => {
    const svg = heatmap({ ...base, rows: [], columns: [], values: [] });
    expect(count(svg, '<rect class="cell"')).toBe(0);
    expect(svg).not.toContain('NaN');
    expect(svg).not.toContain('Infinity');
  });

  test('column groups draw separators', () => {
    const svg = heatmap({ ...base, rows: ['a'], columns: ['0', '1', '2', '3'], values: [[1, 2, 3, 4]], columnGroupSize: 2 });
    expect(count(/<g class="groups">(.*?)<\/g>/.exec(svg)?.[1] ?? '', '<line')).toBe(1);
  });

  test('escapes labels in tooltips', () => {
    const svg = heatmap({ ...base, rows: ['<r>'], columns: ['&c'], values: [[1]] });
    expect(svg).toContain('<title>&lt;r&gt;, &amp;c: 1</title>');
  });
});

describe('colorScale', () => {
  test.each([
    [0, '#fde725'],
    [1, '#440154'],
    [-5, '#fde725'],
    [7, '#440154'],
    [Number.NaN, '#d9d9d9'],
  ] as const)('maps %d to %s', (t, expected) => {
    expect(colorScale(t)).toBe(expected);
  });
});
