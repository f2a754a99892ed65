import { Writable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { ProgressReporter } from './progress.js';

/** A stream that records every write, and claims to be a terminal when `isTTY` is set. */
class RecordingStream extends Writable {
  readonly writes: string[] = [];

  constructor(readonly isTTY: boolean) {
    super();
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.writes.push(chunk.toString());
    callback();
  }
}

/** Creates a reporter on a recording stream, with a clock the test moves by hand. */
function reporterWithClock(isTTY: boolean, intervalMs = 1000) {
  const stream = new RecordingStream(isTTY);
  const clock = { nowMs: 0 };
  const reporter = new ProgressReporter(stream, () => clock.nowMs, intervalMs);
  return { stream, clock, reporter };
}

const CLEAR_LINE = '\r\x1b[2K';

describe('ProgressReporter off a terminal', () => {
  test('prints the first update of a step', () => {
    const { stream, reporter } = reporterWithClock(false);

    reporter.update('reading trace.jsonl', 4096);

    expect(stream.writes).toEqual(['reading trace.jsonl: 4096\n']);
  });

  test('prints at most once per interval within a step', () => {
    const { stream, clock, reporter } = reporterWithClock(false);

    reporter.update('reading', 4096);
    clock.nowMs = 500;
    reporter.update('reading', 8192);
    clock.nowMs = 999;
    reporter.update('reading', 12288);
    clock.nowMs = 1000;
    reporter.update('reading', 16384);

    expect(stream.writes).toEqual(['reading: 4096\n', 'reading: 16384\n']);
  });

  test('prints a new step at once', () => {
    const { stream, clock, reporter } = reporterWithClock(false);

    reporter.update('planning', 0, 7);
    clock.nowMs = 10;
    reporter.update('evaluating', 0, 18);

    expect(stream.writes).toEqual(['planning: 0/7 (0%)\n', 'evaluating: 0/18 (0%)\n']);
  });

  test('prints the completed step within the interval', () => {
    const { stream, clock, reporter } = reporterWithClock(false);

    reporter.update('evaluating', 0, 18);
    clock.nowMs = 100;
    reporter.update('evaluating', 9, 18);
    clock.nowMs = 200;
    reporter.update('evaluating', 18, 18);

    expect(stream.writes).toEqual(['evaluating: 0/18 (0%)\n', 'evaluating: 18/18 (100%)\n']);
  });

  test('rounds the percentage down', () => {
    const { stream, reporter } = reporterWithClock(false);

    reporter.update('planning', 2, 3);

    expect(stream.writes).toEqual(['planning: 2/3 (66%)\n']);
  });

  test('finish writes nothing', () => {
    const { stream, reporter } = reporterWithClock(false);

    reporter.update('reading', 1);
    reporter.finish();

    expect(stream.writes).toEqual(['reading: 1\n']);
  });
});

describe('ProgressReporter on a terminal', () => {
  test('rewrites one line on every update', () => {
    const { stream, clock, reporter } = reporterWithClock(true);

    reporter.update('reading', 4096);
    clock.nowMs = 1;
    reporter.update('reading', 8192);
    reporter.update('planning', 1, 4);

    expect(stream.writes).toEqual([
      `${CLEAR_LINE}reading: 4096`,
      `${CLEAR_LINE}reading: 8192`,
      `${CLEAR_LINE}planning: 1/4 (25%)`,
    ]);
    expect(stream.writes.join('')).not.toContain('\n');
  });

  test('finish clears the line once', () => {
    const { stream, reporter } = reporterWithClock(true);

    reporter.update('reading', 1);
    reporter.finish();
    reporter.finish();

    expect(stream.writes).toEqual([`${CLEAR_LINE}reading: 1`, CLEAR_LINE]);
  });

  test('finish without updates writes nothing', () => {
    const { stream, reporter } = reporterWithClock(true);

    reporter.finish();

    expect(stream.writes).toEqual([]);
  });
});
