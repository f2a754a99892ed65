/**
 * Building blocks for self-contained HTML reports: one page with inline CSS, and escaped tables,
 * figures and definition lists. A page loads nothing from anywhere: no scripts, no web fonts, no
 * images and no links to other hosts, so it opens offline and can be attached to a ticket as is.
 */
import { escapeXml } from './svg.js';

export interface HtmlSection {
  readonly heading: string;
  /** Trusted HTML, inserted as is. Escape any user text in it with escapeXml(). */
  readonly body: string;
  /** Fragment id of the section for the table of contents, by default derived from the heading. */
  readonly id?: string;
}

export interface HtmlPageOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly sections: readonly HtmlSection[];
}

const STYLE = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body {
  margin: 0; padding: 24px; background: #ffffff; color: #1a1a1a;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
main { max-width: 1240px; margin: 0 auto; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d0d0d0; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p { max-width: 80ch; }
.subtitle { color: #555555; margin: 0 0 16px; }
nav ol { margin: 8px 0 0; padding-left: 20px; columns: 2; max-width: 80ch; }
a { color: #0b5cad; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e0e0e0; text-align: left; vertical-align: top; }
thead th { background: #f2f2f2; border-bottom: 2px solid #c8c8c8; vertical-align: bottom; max-width: 9em; }
tbody tr:nth-child(even) { background: #fafafa; }
tbody th { font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
td.best { font-weight: 700; background: #dcefdc; }
.table-wrap { overflow-x: auto; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
figure { margin: 8px 0 16px; }
figcaption { color: #555555; font-size: 13px; max-width: 80ch; }
svg.chart { max-width: 100%; height: auto; display: block; }
.figures { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: flex-start; }
.note { color: #555555; font-size: 13px; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; }
@media print { body { padding: 0; } h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
`;

/**
 * Renders one HTML5 document with the title, an optional subtitle, a table of contents when there
 * are three or more sections, and the sections in order. Headings are escaped, but bodies are not.
 */
export function htmlPage(options: HtmlPageOptions): string {
  const ids = uniqueIds(options.sections);
  const contents =
    options.sections.length >= 3
      ? `<nav aria-label="Contents"><ol>${options.sections
          .map((section, index) => `<li><a href="#${ids[index] ?? ''}">${escapeXml(section.heading)}</a></li>`)
          .join('')}</ol></nav>`
      : '';
  const sections = options.sections
    .map((section, index) => `<section id="${ids[index] ?? ''}">\n<h2>${escapeXml(section.heading)}</h2>\n${section.body}\n</section>`)
    .join('\n');
  const subtitle = options.subtitle === undefined ? '' : `<p class="subtitle">${escapeXml(options.subtitle)}</p>\n`;

  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeXml(options.title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    '<main>',
    `<h1>${escapeXml(options.title)}</h1>`,
    `${subtitle}${contents}`,
    sections,
    '</main>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/** Fragment ids from the headings ("Per-layer time" -> "per-layer-time"), made unique with a suffix. */
function uniqueIds(sections: readonly HtmlSection[]): string[] {
  const seen = new Map<string, number>();
  return sections.map((section, index) => {
    const base = slug(section.id ?? section.heading) || `section-${index + 1}`;
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    return count === 0 ? base : `${base}-${count + 1}`;
  });
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

/** A table cell with preformatted text. */
export interface TableCellSpec {
  readonly text: string;
  /** Right-aligns the cell with tabular digits. */
  readonly numeric?: boolean;
  /** Marks the cell as the best of its column (bold on a light green background). */
  readonly highlight?: boolean;
  /** Tooltip shown on hover. */
  readonly title?: string;
}

/** Cell content: a string is plain text, a number is formatted and right-aligned, and a spec sets text and style. */
export type TableCell = string | number | TableCellSpec;

export interface HtmlTableOptions {
  readonly caption?: string;
  /** Renders the first cell of every row as a row header. */
  readonly rowHeaders?: boolean;
  /** id attribute of the table element. */
  readonly id?: string;
  /** Formatter of number cells, by default formatNumber(). Non-finite numbers always show as "–". */
  readonly numberFormat?: (value: number) => string;
}

/** Placeholder for a missing or non-finite value. */
export const MISSING_VALUE = '–';

/**
 * Formats a number for tables: integers with thousands separators, other values with three
 * significant digits but at most four decimals, and "–" for NaN or Infinity.
 */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) {
    return MISSING_VALUE;
  }
  if (Number.isInteger(value)) {
    return groupThousands(value);
  }
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  const decimals = Math.min(4, Math.max(0, 2 - magnitude));
  return formatFixed(value, decimals);
}

/** Formats with a fixed number of decimals and thousands separators, never as "-0", and non-finite values as "–". */
export function formatFixed(value: number, decimals: number): string {
  if (!Number.isFinite(value)) {
    return MISSING_VALUE;
  }
  const text = Math.abs(value).toFixed(decimals);
  const negative = value < 0 && Number(text) !== 0;
  const [whole = '0', fraction] = text.split('.');
  const grouped = groupThousands(Number(whole));
  return `${negative ? '-' : ''}${grouped}${fraction === undefined ? '' : `.${fraction}`}`;
}

/** Formats an integer with commas every three digits, independent of the machine's locale. */
function groupThousands(value: number): string {
  const digits = Math.abs(Math.trunc(value)).toFixed(0);
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return value < 0 && grouped !== '0' ? `-${grouped}` : grouped;
}

/**
 * Renders a table with escaped headers and cells. Number cells, and spec cells marked numeric, are
 * right-aligned, and so is the header of a column whose body cells are all numeric.
 */
export function htmlTable(
  headers: readonly string[],
  rows: readonly (readonly TableCell[])[],
  options: HtmlTableOptions = {},
): string {
  const format = options.numberFormat ?? formatNumber;
  const resolved = rows.map((row) => row.map((cell) => resolveCell(cell, format)));
  const numericColumn = headers.map(
    (_, column) => resolved.length > 0 && resolved.every((row) => row[column]?.numeric === true),
  );

  const head = headers
    .map((header, column) => `<th scope="col"${numericColumn[column] === true ? ' class="num"' : ''}>${escapeXml(header)}</th>`)
    .join('');
  const body = resolved
    .map((row) => {
      const cells = row.map((cell, column) => {
        const isRowHeader = options.rowHeaders === true && column === 0;
        const classes = [cell.numeric === true ? 'num' : '', cell.highlight === true ? 'best' : ''].filter(Boolean);
        const classAttribute = classes.length > 0 ? ` class="${classes.join(' ')}"` : '';
        const titleAttribute = cell.title === undefined ? '' : ` title="${escapeXml(cell.title)}"`;
        const tag = isRowHeader ? 'th' : 'td';
        const scope = isRowHeader ? ' scope="row"' : '';
        return `<${tag}${scope}${classAttribute}${titleAttribute}>${escapeXml(cell.text)}</${tag}>`;
      });
      return `<tr>${cells.join('')}</tr>`;
    })
    .join('\n');

  const idAttribute = options.id === undefined ? '' : ` id="${escapeXml(options.id)}"`;
  const caption = options.caption === undefined ? '' : `<caption>${escapeXml(options.caption)}</caption>`;
  return `<div class="table-wrap"><table${idAttribute}>${caption}<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody></table></div>`;
}

function resolveCell(cell: TableCell, format: (value: number) => string): TableCellSpec {
  if (typeof cell === 'number') {
    return { text: Number.isFinite(cell) ? format(cell) : MISSING_VALUE, numeric: true };
  }
  if (typeof cell === 'string') {
    return { text: cell };
  }
  return cell;
}

/** Wraps trusted markup, typically an SVG chart, in a figure with an escaped caption. */
export function htmlFigure(content: string, caption?: string): string {
  const figcaption = caption === undefined ? '' : `<figcaption>${escapeXml(caption)}</figcaption>`;
  return `<figure>${content}${figcaption}</figure>`;
}

/** Renders term-description pairs as a two-column definition list, escaping both sides. */
export function htmlFacts(entries: readonly (readonly [string, string])[]): string {
  const items = entries.map(([term, description]) => `<dt>${escapeXml(term)}</dt><dd>${escapeXml(description)}</dd>`);
  return `<dl class="facts">${items.join('')}</dl>`;
}

/** Renders an escaped paragraph. */
export function htmlParagraph(text: string, className?: string): string {
  const classAttribute = className === undefined ? '' : ` class="${escapeXml(className)}"`;
  return `<p${classAttribute}>${escapeXml(text)}</p>`;
}
