/**
 * Exponentially weighted smoothing of activation statistics: the previous estimate decays by
 * 0.5^(elapsed / half-life) and the new window is added, so a window half a half-life old counts
 * 0.71 times as much as a fresh one. Counts stay in tokens (fractional after decay).
 */
import { mergeStats, scaleStats } from '../stats/activation.js';
import type { ActivationStats } from '../stats/types.js';

/** Decay factor after `elapsedMs` for a half-life of `halfLifeMs`; 0 when the half-life is 0. */
export function decayFactor(elapsedMs: number, halfLifeMs: number): number {
  if (halfLifeMs <= 0) return 0;
  return 0.5 ** (Math.max(0, elapsedMs) / halfLifeMs);
}

/** Returns the smoothed statistics after a new window; `previous` null starts from the window. */
export function smoothStats(
  previous: ActivationStats | null,
  window: ActivationStats,
  options: { elapsedMs: number; halfLifeMs: number; seed: number },
): ActivationStats {
  if (previous === null) return window;
  const factor = decayFactor(options.elapsedMs, options.halfLifeMs);
  if (factor === 0) return window;
  return mergeStats(scaleStats(previous, factor), window, { seed: options.seed });
}
