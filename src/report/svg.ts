/**
 * SVG chart primitives for the HTML reports: line charts, grouped bar charts and heatmaps.
 *
 * Every function is pure and deterministic, so the same input gives the same string and reports
 * can be diffed. All text is escaped. Non-finite values (NaN, Infinity) are skipped or shown as
 * "no data", and never printed as numbers. The markup has no xmlns attribute, because the HTML5
 * parser puts inline <svg> elements in the SVG namespace by itself. Wrap a chart with svgDocument()
 * to write a standalone .svg file. Sizes are in CSS pixels.
 */
import {
  AXIS_COLOR,
  dashAttribute,
  escapeXml,
  extent,
  formatTickLabel,
  formatValue,
  LABEL_SIZE,
  layoutLegend,
  maxTickLabelWidth,
  MUTED_COLOR,
  niceTicks,
  noDataText,
  px,
  rangeWithZero,
  renderLegend,
  renderYAxis,
  seriesStyle,
  svgOpen,
  text,
  TEXT_COLOR,
  textWidth,
  TICK_SIZE,
  TITLE_SIZE,
  truncate,
  type Ticks,
} from './svg-layout.js';

export { escapeXml, formatTickLabel, formatValue, niceTicks, PALETTE, seriesStyle, type Ticks } from './svg-layout.js';

/** Wraps chart markup into a standalone SVG file with the XML declaration and namespace. */
export function svgDocument(chart: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${chart.replace(/^<svg /, '<svg xmlns="http://www.w3.org/2000/svg" ')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Line chart.

/** One line, with points in drawing order. A non-finite coordinate breaks the line. */
export interface LineSeries {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
  /** Palette index (see seriesStyle), by default the series position. Pass it to keep a series' colour across charts. */
  readonly colorIndex?: number;
}

export interface LineChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly LineSeries[];
  /** Width of the SVG, default 640. */
  readonly width?: number;
  /** Height of title, plot and axes, default 320. The legend adds its rows below. */
  readonly height?: number;
  /** Whether x ticks fall on integers only, for example for layer indices. */
  readonly xIntegerTicks?: boolean;
}

/** Series with at most this many finite points get a marker on every point. */
const MARKER_POINT_LIMIT = 16;

/**
 * Renders a line chart with a y axis that includes zero, gridlines at nice ticks and a legend.
 * Every series with at least one finite point becomes one <path class="series">. A point whose
 * neighbours are both missing is also drawn as a marker, because a path alone would not show it.
 */
export function lineChart(options: LineChartOptions): string {
  const width = options.width ?? 640;
  const height = options.height ?? 320;
  const segmentsOfSeries = options.series.map((series) => finiteSegments(series.points));
  const allPoints = segmentsOfSeries.flat(2);

  const [dataXMin, dataXMax] = extent(allPoints.map((point) => point[0]));
  const [yMin, yMax] = extent(allPoints.map((point) => point[1]));
  const integerStep = options.xIntegerTicks === true ? 1 : 0;
  let xMin = Number.isNaN(dataXMin) ? 0 : dataXMin;
  let xMax = Number.isNaN(dataXMax) ? 1 : dataXMax;
  if (xMin === xMax) {
    const pad = options.xIntegerTicks === true ? 1 : 0.5;
    xMin -= pad;
    xMax += pad;
  }
  const xTicks = niceTicks(xMin, xMax, 8, integerStep);
  const xTickValues = xTicks.values.filter((value) => value >= xMin - 1e-9 && value <= xMax + 1e-9);
  const yTicks = niceTicks(...rangeWithZero(yMin, yMax), 5);

  const left = 14 + LABEL_SIZE + 8 + maxTickLabelWidth(yTicks) + 6;
  const right = 16;
  const top = TITLE_SIZE + 22;
  const bottom = TICK_SIZE + 10 + LABEL_SIZE + 14;
  const plotRight = width - right;
  const plotBottom = height - bottom;
  const scaleX = (value: number): number => left + ((value - xMin) / (xMax - xMin)) * (plotRight - left);
  const scaleY = (value: number): number =>
    plotBottom - ((value - yTicks.min) / (yTicks.max - yTicks.min)) * (plotBottom - top);

  const legendEntries = options.series.map((series, index) => ({
    name: series.name,
    colorIndex: series.colorIndex ?? index,
  }));
  const legend = layoutLegend(legendEntries, width - left - right);
  const totalHeight = height + (legend.height > 0 ? legend.height + 8 : 0);

  const parts: string[] = [svgOpen(width, totalHeight, options.title)];
  parts.push(text(left, TITLE_SIZE + 6, options.title, { size: TITLE_SIZE, weight: 'bold' }));
  parts.push(renderYAxis(yTicks, scaleY, left, plotRight));
  parts.push(renderXTicks(xTickValues, xTicks, scaleX, plotBottom));
  parts.push(
    `<line x1="${px(left)}" y1="${px(plotBottom)}" x2="${px(plotRight)}" y2="${px(plotBottom)}" stroke="${AXIS_COLOR}"/>`,
    `<line x1="${px(left)}" y1="${px(top)}" x2="${px(left)}" y2="${px(plotBottom)}" stroke="${AXIS_COLOR}"/>`,
  );
  parts.push(text((left + plotRight) / 2, height - 8, options.xLabel, { anchor: 'middle' }));
  const yLabelX = 14 + LABEL_SIZE / 2;
  const yLabelY = (top + plotBottom) / 2;
  parts.push(
    text(yLabelX, yLabelY, options.yLabel, {
      anchor: 'middle',
      transform: `rotate(-90 ${px(yLabelX)} ${px(yLabelY)})`,
    }),
  );

  if (allPoints.length === 0) {
    parts.push(noDataText((left + plotRight) / 2, (top + plotBottom) / 2));
  }
  options.series.forEach((series, index) => {
    const segments = segmentsOfSeries[index] ?? [];
    parts.push(renderLineSeries(series, segments, legendEntries[index]?.colorIndex ?? index, scaleX, scaleY));
  });
  parts.push(renderLegend(legendEntries, legend, left, height + 4, 'line'));
  parts.push('</svg>');
  return parts.join('');
}

/** Splits points into runs of finite points. A non-finite coordinate ends a run. */
function finiteSegments(points: readonly (readonly [number, number])[]): [number, number][][] {
  const segments: [number, number][][] = [];
  let current: [number, number][] = [];
  for (const [x, y] of points) {
    if (Number.isFinite(x) && Number.isFinite(y)) {
      current.push([x, y]);
    } else if (current.length > 0) {
      segments.push(current);
      current = [];
    }
  }
  if (current.length > 0) {
    segments.push(current);
  }
  return segments;
}

function renderXTicks(values: readonly number[], ticks: Ticks, scaleX: (v: number) => number, plotBottom: number): string {
  const parts = values.map((value) => {
    const x = scaleX(value);
    return (
      `<line x1="${px(x)}" y1="${px(plotBottom)}" x2="${px(x)}" y2="${px(plotBottom + 4)}" stroke="${AXIS_COLOR}"/>` +
      text(x, plotBottom + 6 + TICK_SIZE, formatTickLabel(value, ticks), {
        size: TICK_SIZE,
        anchor: 'middle',
        fill: MUTED_COLOR,
      })
    );
  });
  return `<g class="x-axis">${parts.join('')}</g>`;
}

function renderLineSeries(
  series: LineSeries,
  segments: readonly (readonly [number, number])[][],
  colorIndex: number,
  scaleX: (v: number) => number,
  scaleY: (v: number) => number,
): string {
  if (segments.length === 0) {
    return '';
  }
  const style = seriesStyle(colorIndex);
  const d = segments
    .map((segment) =>
      segment.map(([x, y], index) => `${index === 0 ? 'M' : 'L'}${px(scaleX(x))} ${px(scaleY(y))}`).join(' '),
    )
    .join(' ');
  const pointCount = segments.reduce((sum, segment) => sum + segment.length, 0);
  const markers = segments
    .filter((segment) => pointCount <= MARKER_POINT_LIMIT || segment.length === 1)
    .flat()
    .map(
      ([x, y]) =>
        `<circle class="point" cx="${px(scaleX(x))}" cy="${px(scaleY(y))}" r="3" fill="${style.color}">` +
        `<title>${escapeXml(`${series.name}: ${formatValue(x)}, ${formatValue(y)}`)}</title></circle>`,
    );
  return (
    `<g class="series-group">` +
    `<path class="series" d="${d}" fill="none" stroke="${style.color}" stroke-width="2" ` +
    `stroke-linejoin="round" stroke-linecap="round"${dashAttribute(style.dash)}>` +
    `<title>${escapeXml(series.name)}</title></path>${markers.join('')}</g>`
  );
}

// ---------------------------------------------------------------------------------------------
// Grouped bar chart.

/** Values of one series, where values[i] belongs to categories[i]. Missing or non-finite values draw no bar. */
export interface BarSeries {
  readonly name: string;
  readonly values: readonly number[];
  /** Palette index (see seriesStyle), by default the series position. */
  readonly colorIndex?: number;
}

export interface BarChartOptions {
  readonly title: string;
  readonly categories: readonly string[];
  readonly series: readonly BarSeries[];
  readonly yLabel: string;
  /** Width of the SVG, default 640. */
  readonly width?: number;
  /** Height of title, plot and axes without rotated category labels and legend, default 320. */
  readonly height?: number;
  /** Formatter of a bar's value in its tooltip, by default four significant digits. */
  readonly valueFormat?: (value: number) => string;
}

const CATEGORY_MAX_CHARS = 28;
const CATEGORY_ANGLE_DEG = 40;

/**
 * Renders grouped bars: one group per category, one bar per series, from zero to the value, with
 * a <title> tooltip per bar. Category labels that do not fit under their group are rotated.
 */
export function barChart(options: BarChartOptions): string {
  const width = options.width ?? 640;
  const baseHeight = options.height ?? 320;
  const format = options.valueFormat ?? formatValue;
  const values = options.series.flatMap((series) => series.values.filter((value) => Number.isFinite(value)));
  const [valueMin, valueMax] = extent(values);
  const yTicks = niceTicks(...rangeWithZero(valueMin, valueMax), 5);

  const left = 14 + LABEL_SIZE + 8 + maxTickLabelWidth(yTicks) + 6;
  const right = 16;
  const top = TITLE_SIZE + 22;
  const plotRight = width - right;
  const categoryCount = Math.max(1, options.categories.length);
  const groupWidth = (plotRight - left) / categoryCount;
  const labels = options.categories.map((category) => truncate(category, CATEGORY_MAX_CHARS));
  const labelWidth = Math.max(0, ...labels.map((label) => textWidth(label, TICK_SIZE)));
  const rotate = labelWidth > groupWidth - 4;
  const angle = (CATEGORY_ANGLE_DEG * Math.PI) / 180;
  const labelBand = rotate ? labelWidth * Math.sin(angle) + TICK_SIZE + 8 : TICK_SIZE + 10;
  const height = baseHeight + (rotate ? labelBand - (TICK_SIZE + 10) : 0);
  const bottom = labelBand + LABEL_SIZE + 14;
  const plotBottom = height - bottom;
  const scaleY = (value: number): number =>
    plotBottom - ((value - yTicks.min) / (yTicks.max - yTicks.min)) * (plotBottom - top);

  const legendEntries = options.series.map((series, index) => ({
    name: series.name,
    colorIndex: series.colorIndex ?? index,
  }));
  const legend = layoutLegend(legendEntries, width - left - right);
  const totalHeight = height + (legend.height > 0 ? legend.height + 8 : 0);

  const parts: string[] = [svgOpen(width, totalHeight, options.title)];
  parts.push(text(left, TITLE_SIZE + 6, options.title, { size: TITLE_SIZE, weight: 'bold' }));
  parts.push(renderYAxis(yTicks, scaleY, left, plotRight));

  const barSlot = (groupWidth * 0.8) / Math.max(1, options.series.length);
  const zeroY = scaleY(0);
  const bars: string[] = [];
  options.categories.forEach((category, categoryIndex) => {
    const groupLeft = left + categoryIndex * groupWidth + groupWidth * 0.1;
    options.series.forEach((series, seriesIndex) => {
      const value = series.values[categoryIndex];
      if (value === undefined || !Number.isFinite(value)) {
        return;
      }
      const y = scaleY(value);
      const style = seriesStyle(legendEntries[seriesIndex]?.colorIndex ?? seriesIndex);
      bars.push(
        `<rect class="bar" x="${px(groupLeft + seriesIndex * barSlot + barSlot * 0.05)}" y="${px(Math.min(y, zeroY))}" ` +
          `width="${px(barSlot * 0.9)}" height="${px(Math.abs(zeroY - y))}" fill="${style.color}">` +
          `<title>${escapeXml(`${series.name}, ${category}: ${format(value)}`)}</title></rect>`,
      );
    });
  });
  parts.push(`<g class="bars">${bars.join('')}</g>`);
  if (values.length === 0) {
    parts.push(noDataText((left + plotRight) / 2, (top + plotBottom) / 2));
  }

  parts.push(
    `<line x1="${px(left)}" y1="${px(zeroY)}" x2="${px(plotRight)}" y2="${px(zeroY)}" stroke="${AXIS_COLOR}"/>`,
    `<line x1="${px(left)}" y1="${px(top)}" x2="${px(left)}" y2="${px(plotBottom)}" stroke="${AXIS_COLOR}"/>`,
  );
  parts.push(renderCategoryLabels(options.categories, labels, left, groupWidth, plotBottom, rotate));
  const yLabelX = 14 + LABEL_SIZE / 2;
  const yLabelY = (top + plotBottom) / 2;
  parts.push(
    text(yLabelX, yLabelY, options.yLabel, {
      anchor: 'middle',
      transform: `rotate(-90 ${px(yLabelX)} ${px(yLabelY)})`,
    }),
  );
  parts.push(renderLegend(legendEntries, legend, left, height + 4, 'box'));
  parts.push('</svg>');
  return parts.join('');
}

function renderCategoryLabels(
  categories: readonly string[],
  labels: readonly string[],
  left: number,
  groupWidth: number,
  plotBottom: number,
  rotate: boolean,
): string {
  const parts = labels.map((label, index) => {
    const x = left + (index + 0.5) * groupWidth;
    const y = plotBottom + 6 + TICK_SIZE;
    const full = categories[index] ?? label;
    const tooltip = label === full ? '' : `<title>${escapeXml(full)}</title>`;
    if (!rotate) {
      return `<g>${text(x, y, label, { size: TICK_SIZE, anchor: 'middle' })}${tooltip}</g>`;
    }
    return (
      `<g>${text(x, y, label, {
        size: TICK_SIZE,
        anchor: 'end',
        transform: `rotate(-${CATEGORY_ANGLE_DEG} ${px(x)} ${px(y)})`,
      })}${tooltip}</g>`
    );
  });
  return `<g class="x-axis">${parts.join('')}</g>`;
}

// ---------------------------------------------------------------------------------------------
// Heatmap.

export interface HeatmapOptions {
  readonly title: string;
  readonly rows: readonly string[];
  readonly columns: readonly string[];
  /** Cell values values[r][c]. Missing or non-finite cells are drawn grey and labelled "no data". */
  readonly values: readonly (readonly number[])[];
  /** Caption of the colour scale, for example "share of layer load". */
  readonly valueLabel: string;
  /** Title of the row axis, for example "layer". Tooltips put it before the row name. */
  readonly rowAxisLabel?: string;
  /** Title of the column axis, for example "GPU". Tooltips put it before the column name. */
  readonly columnAxisLabel?: string;
  /** Lower end of the colour scale, by default the smallest finite value. Pass it to compare heatmaps. */
  readonly min?: number;
  /** Upper end of the colour scale, by default the largest finite value. */
  readonly max?: number;
  /** Number of columns per group, for example GPUs per node. A separator line is drawn between groups. */
  readonly columnGroupSize?: number;
  /** Formatter of values in tooltips and on the scale, by default four significant digits. */
  readonly valueFormat?: (value: number) => string;
  /** Cell size in px, default 36 x 14. */
  readonly cellWidth?: number;
  readonly cellHeight?: number;
}

/**
 * Nine evenly spaced samples of matplotlib's viridis colour map in 8-bit sRGB, from its dark end to
 * its light end. Published nine-colour tables differ from these by at most 2 per channel.
 * colorScale() interpolates linearly between them, which approximates viridis closely enough for
 * reading a heatmap.
 */
const VIRIDIS = [
  [0x44, 0x01, 0x54],
  [0x47, 0x2c, 0x7a],
  [0x3b, 0x51, 0x8b],
  [0x2c, 0x71, 0x8e],
  [0x21, 0x90, 0x8d],
  [0x27, 0xad, 0x81],
  [0x5c, 0xc8, 0x63],
  [0xaa, 0xdc, 0x32],
  [0xfd, 0xe7, 0x25],
] as const;
const NO_DATA_COLOR = '#d9d9d9';

/**
 * Maps t in [0, 1] to a sequential colour: reversed viridis, light yellow for 0 and dark purple for
 * 1, so that darker means more on a light page. t outside [0, 1] is clamped, and NaN gives the
 * grey used for missing cells.
 */
export function colorScale(t: number): string {
  if (Number.isNaN(t)) {
    return NO_DATA_COLOR;
  }
  const clamped = Math.min(1, Math.max(0, t));
  const position = (1 - clamped) * (VIRIDIS.length - 1);
  const lower = Math.floor(position);
  const upper = Math.min(VIRIDIS.length - 1, lower + 1);
  const fraction = position - lower;
  const from = VIRIDIS[lower] ?? VIRIDIS[0];
  const to = VIRIDIS[upper] ?? VIRIDIS[0];
  const channels = [0, 1, 2].map((channel) => {
    const value = Math.round((from[channel] ?? 0) + ((to[channel] ?? 0) - (from[channel] ?? 0)) * fraction);
    return value.toString(16).padStart(2, '0');
  });
  return `#${channels.join('')}`;
}

const SCALE_STEPS = 40;
const SCALE_WIDTH = 200;

/**
 * Renders a heatmap of rows x columns cells, each a <rect class="cell"> with a <title> tooltip
 * that names its row, column and value, and a sequential colour scale below it. When all values are
 * equal, every cell takes the light end of the scale.
 */
export function heatmap(options: HeatmapOptions): string {
  const format = options.valueFormat ?? formatValue;
  const cellWidth = options.cellWidth ?? 36;
  const cellHeight = options.cellHeight ?? 14;
  const finiteValues = options.values.flatMap((row) => row.filter((value) => Number.isFinite(value)));
  const [dataLow, dataHigh] = extent(finiteValues);
  const low = options.min !== undefined && Number.isFinite(options.min) ? options.min : dataLow;
  const high = options.max !== undefined && Number.isFinite(options.max) ? options.max : dataHigh;
  const toUnit = (value: number): number => (high > low ? (value - low) / (high - low) : 0);

  const rowLabelEvery = Math.max(1, Math.ceil((TICK_SIZE + 1) / cellHeight));
  const columnLabels = options.columns.map((column) => truncate(column, 12));
  const widestColumnLabel = Math.max(0, ...columnLabels.map((label) => textWidth(label, TICK_SIZE)));
  const columnLabelEvery = Math.max(1, Math.ceil((widestColumnLabel + 4) / cellWidth));
  const rowLabels = options.rows.map((row) => truncate(row, 16));
  const widestRowLabel = Math.max(0, ...rowLabels.map((label) => textWidth(label, TICK_SIZE)));

  const rowAxisWidth = options.rowAxisLabel === undefined ? 0 : LABEL_SIZE + 8;
  const left = 10 + rowAxisWidth + widestRowLabel + 6;
  const columnAxisHeight = options.columnAxisLabel === undefined ? 0 : LABEL_SIZE + 6;
  const top = TITLE_SIZE + 16 + columnAxisHeight + TICK_SIZE + 6;
  const gridWidth = options.columns.length * cellWidth;
  const gridHeight = options.rows.length * cellHeight;
  const width = Math.max(left + gridWidth + 12, SCALE_WIDTH + 40, textWidth(options.title, TITLE_SIZE) + 20);
  const scaleTop = top + gridHeight + 14;
  const height = scaleTop + 14 + TICK_SIZE + 8 + LABEL_SIZE + 8;

  const parts: string[] = [svgOpen(width, height, options.title)];
  parts.push(text(10, TITLE_SIZE + 6, options.title, { size: TITLE_SIZE, weight: 'bold' }));
  if (options.columnAxisLabel !== undefined) {
    parts.push(text(left + gridWidth / 2, TITLE_SIZE + 16 + LABEL_SIZE, options.columnAxisLabel, { anchor: 'middle' }));
  }
  if (options.rowAxisLabel !== undefined) {
    const x = 10 + LABEL_SIZE / 2;
    const y = top + gridHeight / 2;
    parts.push(text(x, y, options.rowAxisLabel, { anchor: 'middle', transform: `rotate(-90 ${px(x)} ${px(y)})` }));
  }

  const headers = columnLabels
    .map((label, column) =>
      column % columnLabelEvery === 0
        ? text(left + (column + 0.5) * cellWidth, top - 6, label, { size: TICK_SIZE, anchor: 'middle', fill: MUTED_COLOR })
        : '',
    )
    .join('');
  const sideLabels = rowLabels
    .map((label, row) =>
      row % rowLabelEvery === 0
        ? text(left - 6, top + (row + 0.5) * cellHeight + 4, label, { size: TICK_SIZE, anchor: 'end', fill: MUTED_COLOR })
        : '',
    )
    .join('');
  parts.push(`<g class="labels">${headers}${sideLabels}</g>`);

  const rowTooltip = (name: string): string => (options.rowAxisLabel === undefined ? name : `${options.rowAxisLabel} ${name}`);
  const columnTooltip = (name: string): string =>
    options.columnAxisLabel === undefined ? name : `${options.columnAxisLabel} ${name}`;
  const cells: string[] = [];
  options.rows.forEach((rowName, row) => {
    options.columns.forEach((columnName, column) => {
      const value = options.values[row]?.[column] ?? Number.NaN;
      const finite = Number.isFinite(value);
      const tooltip = `${rowTooltip(rowName)}, ${columnTooltip(columnName)}: ${finite ? format(value) : 'no data'}`;
      cells.push(
        `<rect class="cell" x="${px(left + column * cellWidth)}" y="${px(top + row * cellHeight)}" ` +
          `width="${px(cellWidth)}" height="${px(cellHeight)}" fill="${colorScale(finite ? toUnit(value) : Number.NaN)}" ` +
          `stroke="#ffffff" stroke-width="1"><title>${escapeXml(tooltip)}</title></rect>`,
      );
    });
  });
  parts.push(`<g class="cells">${cells.join('')}</g>`);
  parts.push(renderColumnGroups(options, left, top, cellWidth, gridHeight));
  parts.push(renderColorScale(low, high, format, options.valueLabel, 10, scaleTop));
  parts.push('</svg>');
  return parts.join('');
}

function renderColumnGroups(
  options: HeatmapOptions,
  left: number,
  top: number,
  cellWidth: number,
  gridHeight: number,
): string {
  const size = options.columnGroupSize;
  if (size === undefined || !Number.isInteger(size) || size < 1 || size >= options.columns.length) {
    return '';
  }
  const lines: string[] = [];
  for (let column = size; column < options.columns.length; column += size) {
    const x = left + column * cellWidth;
    lines.push(
      `<line x1="${px(x)}" y1="${px(top - 2)}" x2="${px(x)}" y2="${px(top + gridHeight + 2)}" stroke="${TEXT_COLOR}" stroke-width="2"/>`,
    );
  }
  return `<g class="groups">${lines.join('')}</g>`;
}

function renderColorScale(
  low: number,
  high: number,
  format: (value: number) => string,
  valueLabel: string,
  x: number,
  y: number,
): string {
  const stepWidth = SCALE_WIDTH / SCALE_STEPS;
  const steps: string[] = [];
  for (let index = 0; index < SCALE_STEPS; index += 1) {
    steps.push(
      `<rect class="scale" x="${px(x + index * stepWidth)}" y="${px(y)}" width="${px(stepWidth + 0.5)}" ` +
        `height="12" fill="${colorScale((index + 0.5) / SCALE_STEPS)}"/>`,
    );
  }
  const labelY = y + 12 + TICK_SIZE + 4;
  const lowText = Number.isFinite(low) ? format(low) : 'no data';
  const highText = Number.isFinite(high) ? format(high) : 'no data';
  const ends = !Number.isFinite(low) || !Number.isFinite(high)
    ? text(x, labelY, 'no data', { size: TICK_SIZE, fill: MUTED_COLOR })
    : high > low
      ? text(x, labelY, lowText, { size: TICK_SIZE, fill: MUTED_COLOR }) +
        text(x + SCALE_WIDTH, labelY, highText, { size: TICK_SIZE, anchor: 'end', fill: MUTED_COLOR })
      : text(x, labelY, `all ${lowText}`, { size: TICK_SIZE, fill: MUTED_COLOR });
  return (
    `<g class="color-scale">${steps.join('')}${ends}` +
    text(x, labelY + LABEL_SIZE + 4, valueLabel, { fill: MUTED_COLOR }) +
    `</g>`
  );
}
