/**
 * Building blocks shared by the SVG charts in svg.ts: escaping, the colour palette, axis ticks at
 * nice values, number formatting for labels, and the layout of titles, axes and legends.
 * Text widths are estimated from the character count, because no fonts are measured here.
 */

/** Escapes text for XML and HTML element content and for quoted attribute values. */
export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}


/**
 * Okabe–Ito colour-blind-safe palette, without its yellow, which is hard to read on white.
 * Series past the seventh reuse the colours with a dashed, then a dotted line.
 */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#D55E00', '#CC79A7', '#56B4E9', '#000000'] as const;
const DASH_PATTERNS = ['', '6 3', '2 2'] as const;

/** Colour and stroke-dasharray of the series with this palette index ('' for a solid line). */
export function seriesStyle(index: number): { color: string; dash: string } {
  const safeIndex = Number.isInteger(index) && index >= 0 ? index : 0;
  const color = PALETTE[safeIndex % PALETTE.length] ?? PALETTE[0];
  const cycle = Math.floor(safeIndex / PALETTE.length) % DASH_PATTERNS.length;
  return { color, dash: DASH_PATTERNS[cycle] ?? '' };
}

/** Axis ticks: `values` run from `min` to `max` in steps of `step`. */
export interface Ticks {
  readonly min: number;
  readonly max: number;
  readonly step: number;
  readonly values: readonly number[];
}

/**
 * Computes ticks with a "nice" step (1, 2 or 5 x 10^k) that cover [low, high] in about `target`
 * intervals. `min` and `max` are the covered range rounded outwards to whole steps.
 * `minStep` is a floor for the step, for example 1 for integer axes. A zero-width range is widened
 * so that it still gets ticks, and non-finite bounds are replaced by 0 (low) and 1 (high).
 */
export function niceTicks(low: number, high: number, target = 5, minStep = 0): Ticks {
  let lo = Number.isFinite(low) ? low : 0;
  let hi = Number.isFinite(high) ? high : 1;
  if (lo > hi) {
    [lo, hi] = [hi, lo];
  }
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) / 2;
    lo -= lo === 0 ? 0 : pad;
    hi += pad;
  }

  const rough = (hi - lo) / Math.max(1, Math.round(target));
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const normalised = rough / magnitude;
  let factor = 10;
  if (normalised < 1.5) {
    factor = 1;
  } else if (normalised < 3) {
    factor = 2;
  } else if (normalised < 7) {
    factor = 5;
  }
  let step = factor * magnitude;
  if (step < minStep) {
    step = minStep;
  }

  const decimals = decimalsOfStep(step);
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const values: number[] = [];
  for (let k = first; k <= last; k += 1) {
    values.push(roundTo(k * step, decimals));
  }
  return { min: roundTo(first * step, decimals), max: roundTo(last * step, decimals), step, values };
}

/**
 * Formats a tick value with as many decimals as the step needs. Axes whose largest tick reaches
 * 10^3, 10^6 or 10^9 use the suffix k, M or G for all their labels, and print zero as "0".
 */
export function formatTickLabel(value: number, ticks: Pick<Ticks, 'min' | 'max' | 'step'>): string {
  const largest = Math.max(Math.abs(ticks.min), Math.abs(ticks.max));
  const scales = [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const;
  for (const [scale, suffix] of scales) {
    if (largest >= scale) {
      return value === 0 ? '0' : `${fixed(value / scale, decimalsOfStep(ticks.step / scale))}${suffix}`;
    }
  }
  return fixed(value, decimalsOfStep(ticks.step));
}

/**
 * Formats a value for tooltips: from 1000 up rounded to an integer, below that with four significant
 * digits (JavaScript's exponent form below 10^-6), and "no data" for non-finite values.
 */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) {
    return 'no data';
  }
  if (Math.abs(value) >= 1000) {
    return fixed(value, 0);
  }
  return String(Number(value.toPrecision(4)) + 0);
}

const FONT = 'system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif';
export const TEXT_COLOR = '#1a1a1a';
export const MUTED_COLOR = '#555555';
const GRID_COLOR = '#e3e3e3';
export const AXIS_COLOR = '#888888';
export const TITLE_SIZE = 14;
export const LABEL_SIZE = 12;
export const TICK_SIZE = 11;
/** Estimated average advance of one character as a share of the font size, for system sans-serif fonts. */
const CHAR_WIDTH_EM = 0.6;

function decimalsOfStep(step: number): number {
  if (!(step > 0) || !Number.isFinite(step)) {
    return 0;
  }
  return Math.max(0, Math.min(12, -Math.floor(Math.log10(step) + 1e-9)));
}

/**
 * Returns the smallest and largest finite value, or [NaN, NaN] if there is none. It loops, because
 * Math.min(...values) fails on arrays longer than the engine's argument limit.
 */
export function extent(values: readonly number[]): [number, number] {
  let low = Number.NaN;
  let high = Number.NaN;
  for (const value of values) {
    if (!Number.isFinite(value)) {
      continue;
    }
    if (!(value >= low)) {
      low = value;
    }
    if (!(value <= high)) {
      high = value;
    }
  }
  return [low, high];
}

/** Widens [low, high] to include zero, so that bars and lines start from a zero baseline. NaN bounds count as 0. */
export function rangeWithZero(low: number, high: number): [number, number] {
  return [Math.min(0, Number.isNaN(low) ? 0 : low), Math.max(0, Number.isNaN(high) ? 0 : high)];
}

function roundTo(value: number, decimals: number): number {
  return Number(value.toFixed(decimals)) + 0;
}

/** Formats like toFixed, but never as "-0". */
function fixed(value: number, decimals: number): string {
  const text = value.toFixed(decimals);
  return Number(text) === 0 ? (0).toFixed(decimals) : text;
}

/** Formats a coordinate rounded to 0.01 px, never as "-0". */
export function px(value: number): string {
  return String(Math.round(value * 100) / 100 + 0);
}

export function textWidth(text: string, fontSize: number): number {
  return Array.from(text).length * fontSize * CHAR_WIDTH_EM;
}

export function truncate(text: string, maxChars: number): string {
  const chars = Array.from(text);
  return chars.length <= maxChars ? text : `${chars.slice(0, maxChars - 1).join('')}…`;
}

export function svgOpen(width: number, height: number, title: string): string {
  return (
    `<svg class="chart" role="img" width="${px(width)}" height="${px(height)}" ` +
    `viewBox="0 0 ${px(width)} ${px(height)}" font-family="${FONT}" fill="${TEXT_COLOR}">` +
    `<title>${escapeXml(title)}</title>` +
    `<rect width="${px(width)}" height="${px(height)}" fill="#ffffff"/>`
  );
}

export function text(
  x: number,
  y: number,
  content: string,
  attributes: { size?: number; anchor?: 'start' | 'middle' | 'end'; weight?: 'bold'; fill?: string; transform?: string } = {},
): string {
  const parts = [`x="${px(x)}"`, `y="${px(y)}"`, `font-size="${attributes.size ?? LABEL_SIZE}"`];
  if (attributes.anchor !== undefined && attributes.anchor !== 'start') {
    parts.push(`text-anchor="${attributes.anchor}"`);
  }
  if (attributes.weight !== undefined) {
    parts.push(`font-weight="${attributes.weight}"`);
  }
  if (attributes.fill !== undefined) {
    parts.push(`fill="${attributes.fill}"`);
  }
  if (attributes.transform !== undefined) {
    parts.push(`transform="${attributes.transform}"`);
  }
  return `<text ${parts.join(' ')}>${escapeXml(content)}</text>`;
}

/** Name and palette index of one legend entry. */
export interface LegendEntry {
  readonly name: string;
  readonly colorIndex: number;
}

/** Legend height and the offset of every entry from the legend's top left corner. */
export interface LegendLayout {
  readonly height: number;
  readonly positions: readonly { x: number; y: number }[];
}

const LEGEND_ROW = 18;
const LEGEND_SWATCH = 22;
const LEGEND_MAX_CHARS = 40;

/** Places legend entries left to right, wrapping into rows no wider than `maxWidth`. */
export function layoutLegend(entries: readonly LegendEntry[], maxWidth: number): LegendLayout {
  const positions: { x: number; y: number }[] = [];
  let x = 0;
  let row = 0;
  for (const entry of entries) {
    const itemWidth = LEGEND_SWATCH + 6 + textWidth(truncate(entry.name, LEGEND_MAX_CHARS), LABEL_SIZE) + 16;
    if (x > 0 && x + itemWidth > maxWidth) {
      x = 0;
      row += 1;
    }
    positions.push({ x, y: row * LEGEND_ROW });
    x += itemWidth;
  }
  return { height: entries.length === 0 ? 0 : (row + 1) * LEGEND_ROW, positions };
}

export function renderLegend(
  entries: readonly LegendEntry[],
  layout: LegendLayout,
  originX: number,
  originY: number,
  swatch: 'line' | 'box',
): string {
  const items = entries.map((entry, index) => {
    const position = layout.positions[index] ?? { x: 0, y: 0 };
    const x = originX + position.x;
    const middle = originY + position.y + LEGEND_ROW / 2;
    const style = seriesStyle(entry.colorIndex);
    const mark =
      swatch === 'line'
        ? `<line x1="${px(x)}" y1="${px(middle)}" x2="${px(x + LEGEND_SWATCH)}" y2="${px(middle)}" ` +
          `stroke="${style.color}" stroke-width="2.5"${dashAttribute(style.dash)}/>`
        : `<rect x="${px(x + 5)}" y="${px(middle - 6)}" width="12" height="12" fill="${style.color}"/>`;
    const label = truncate(entry.name, LEGEND_MAX_CHARS);
    return (
      `<g class="legend-item">${mark}` +
      text(x + LEGEND_SWATCH + 6, middle + 4, label) +
      (label === entry.name ? '' : `<title>${escapeXml(entry.name)}</title>`) +
      `</g>`
    );
  });
  return `<g class="legend">${items.join('')}</g>`;
}

export function dashAttribute(dash: string): string {
  return dash === '' ? '' : ` stroke-dasharray="${dash}"`;
}

/** Renders the horizontal grid lines and tick labels of a y axis. */
export function renderYAxis(ticks: Ticks, scaleY: (v: number) => number, left: number, right: number): string {
  const parts: string[] = [];
  for (const value of ticks.values) {
    const y = scaleY(value);
    parts.push(
      `<line x1="${px(left)}" y1="${px(y)}" x2="${px(right)}" y2="${px(y)}" stroke="${GRID_COLOR}"/>`,
      text(left - 6, y + 4, formatTickLabel(value, ticks), { size: TICK_SIZE, anchor: 'end', fill: MUTED_COLOR }),
    );
  }
  return `<g class="y-axis">${parts.join('')}</g>`;
}

export function maxTickLabelWidth(ticks: Ticks): number {
  return Math.max(0, ...ticks.values.map((value) => textWidth(formatTickLabel(value, ticks), TICK_SIZE)));
}

export function noDataText(x: number, y: number): string {
  return text(x, y, 'no data', { anchor: 'middle', fill: MUTED_COLOR });
}
