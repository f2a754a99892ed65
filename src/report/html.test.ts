import { describe, expect, test } from 'vitest';
import { formatFixed, formatNumber, htmlFacts, htmlPage, htmlTable } from './html.js';

describe('htmlPage', () => {
  const page = htmlPage({
    title: 'Report <1>',
    subtitle: 'a & b',
    sections: [
      { heading: 'First', body: '<p>one</p>' },
      { heading: 'Second', body: '<p>two</p>' },
      { heading: 'First', body: '<p>three</p>' },
    ],
  });

  test('is an HTML5 document with inline CSS only', () => {
    expect(page.startsWith('<!DOCTYPE html>\n<html lang="en">')).toBe(true);
    expect(page).toContain('<meta charset="utf-8">');
    expect(page).toContain('<style>');
    expect(page).not.toContain('<script');
    expect(page).not.toContain('<link');
    expect(page).not.toContain('http://');
    expect(page).not.toContain('https://');
    expect(page).not.toContain('@import');
    expect(page).not.toContain('url(');
  });

  test('escapes title and subtitle', () => {
    expect(page).toContain('<title>Report &lt;1&gt;</title>');
    expect(page).toContain('<h1>Report &lt;1&gt;</h1>');
    expect(page).toContain('<p class="subtitle">a &amp; b</p>');
  });

  test('keeps sections in order with unique ids', () => {
    const ids = [...page.matchAll(/<section id="([^"]+)">/g)].map((match) => match[1]);
    expect(ids).toEqual(['first', 'second', 'first-2']);
    expect(page.indexOf('<p>one</p>')).toBeLessThan(page.indexOf('<p>two</p>'));
    expect(page.indexOf('<p>two</p>')).toBeLessThan(page.indexOf('<p>three</p>'));
  });

  test('lists three or more sections in the contents', () => {
    expect(page).toContain('<li><a href="#first-2">First</a></li>');
    const short = htmlPage({ title: 't', sections: [{ heading: 'Only', body: '' }] });
    expect(short).not.toContain('<nav');
  });
});

describe('htmlTable', () => {
  test('escapes headers and cells', () => {
    const table = htmlTable(['<h>'], [['<b>&"']]);
    expect(table).toContain('<th scope="col">&lt;h&gt;</th>');
    expect(table).toContain('<td>&lt;b&gt;&amp;&quot;</td>');
  });

  test('right-aligns numbers and their column header', () => {
    const table = htmlTable(['name', 'value'], [['a', 1234.5], ['b', 2]]);
    expect(table).toContain('<th scope="col" class="num">value</th>');
    expect(table).toContain('<th scope="col">name</th>');
    expect(table).toContain('<td class="num">1,235</td>');
    expect(table).toContain('<td class="num">2</td>');
  });

  test('shows non-finite numbers as a dash', () => {
    const table = htmlTable(['v'], [[Number.NaN], [Number.POSITIVE_INFINITY]]);
    expect(table).not.toContain('NaN');
    expect(table).not.toContain('Infinity');
    expect(table.match(/<td class="num">–<\/td>/g)?.length).toBe(2);
  });

  test('marks highlighted cells and row headers', () => {
    const table = htmlTable(['s', 'v'], [['x', { text: '1.0', numeric: true, highlight: true, title: 'a"b' }]], {
      rowHeaders: true,
      caption: 'c<',
      id: 'tid',
    });
    expect(table).toContain('<th scope="row">x</th>');
    expect(table).toContain('<td class="num best" title="a&quot;b">1.0</td>');
    expect(table).toContain('<table id="tid"><caption>c&lt;</caption>');
  });

  test('uses the given number format', () => {
    const table = htmlTable(['v'], [[0.5]], { numberFormat: (value) => `${value * 100}%` });
    expect(table).toContain('<td class="num">50%</td>');
  });
});

describe('formatNumber', () => {
  test.each([
    [0, '0'],
    [1234567, '1,234,567'],
    [-1234, '-1,234'],
    [0.5, '0.500'],
    [12.345, '12.3'],
    [1234.5, '1,235'],
    [0.000123, '0.0001'],
    [Number.NaN, '–'],
  ] as const)('formats %d as %s', (value, expected) => {
    expect(formatNumber(value)).toBe(expected);
  });
});

describe('formatFixed', () => {
  test.each([
    [1.5, 3, '1.500'],
    [-0.0001, 2, '0.00'],
    [-1234.56, 1, '-1,234.6'],
    [999.96, 1, '1,000.0'],
    [Number.POSITIVE_INFINITY, 1, '–'],
  ] as const)('formats %d with %d decimals as %s', (value, decimals, expected) => {
    expect(formatFixed(value, decimals)).toBe(expected);
  });
});

describe('htmlFacts', () => {
  test('escapes terms and descriptions', () => {
    expect(htmlFacts([['a<', 'b&']])).toBe('<dl class="facts"><dt>a&lt;</dt><dd>b&amp;</dd></dl>');
  });
});
