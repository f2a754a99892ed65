/**
 * Knee of a trade-off curve, in the manner of Kneedle (Satopaa et al., "Finding a 'Kneedle' in a
 * Haystack", ICDCS workshops 2011): both axes are scaled to [0, 1] and the knee is the point
 * farthest above the line from the first to the last point. Used to pick the non-uniformity r where
 * more size deviation stops buying much more kept affinity.
 */
export interface TradeOffPoint {
  /** Cost axis: size deviation. */
  readonly x: number;
  /** Benefit axis: affinity kept. */
  readonly y: number;
}

/** Returns the index of the knee; ties go to the lower index (the smaller deviation). */
export function kneeIndex(points: readonly TradeOffPoint[]): number {
  if (points.length <= 2) return 0;
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (const { x, y } of points) {
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
  }
  const spanX = maxX - minX;
  const spanY = maxY - minY;
  if (spanX <= 0 || spanY <= 0) return 0;

  let best = 0;
  let bestGap = -Infinity;
  points.forEach(({ x, y }, i) => {
    const gap = (y - minY) / spanY - (x - minX) / spanX;
    if (gap > bestGap + 1e-12) {
      bestGap = gap;
      best = i;
    }
  });
  return best;
}
