import type { Writable } from 'node:stream';

/**
 * Progress lines on stderr. On a terminal one line is rewritten in place; otherwise a line is
 * printed when the step changes or at most once per `intervalMs`, so logs stay short.
 */
export class ProgressReporter {
  private lastStep = '';
  private lastPrintMs = -Infinity;
  private dirty = false;

  constructor(
    private readonly stream: Writable & { isTTY?: boolean },
    private readonly now: () => number = () => performance.now(),
    private readonly intervalMs = 1000,
  ) {}

  /** Reports `done` of `total` for a step; total 0 means the total is unknown. */
  update(step: string, done: number, total = 0): void {
    const text = total > 0 ? `${step}: ${done}/${total} (${Math.floor((100 * done) / total)}%)` : `${step}: ${done}`;
    const time = this.now();
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${text}`);
      this.dirty = true;
      return;
    }
    if (step !== this.lastStep || time - this.lastPrintMs >= this.intervalMs || (total > 0 && done === total)) {
      this.stream.write(`${text}\n`);
      this.lastStep = step;
      this.lastPrintMs = time;
    }
  }

  /** Shows a free-form status line: rewritten on a terminal, else printed at most once per interval. */
  status(text: string): void {
    const time = this.now();
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[2K${text}`);
      this.dirty = true;
      return;
    }
    if (time - this.lastPrintMs >= this.intervalMs) {
      this.stream.write(`${text}\n`);
      this.lastPrintMs = time;
    }
  }

  /** Ends the progress display so later output starts on a clean line. */
  finish(): void {
    if (this.dirty) this.stream.write('\r\x1b[2K');
    this.dirty = false;
  }
}
