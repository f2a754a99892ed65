/**
 * Seeded pseudo-random numbers for the deterministic parts of the product (reservoir sampling,
 * sample merging, seeded planners).
 *
 * The generator adds the golden-ratio increment 0x9e3779b9 to a 32-bit state (a Weyl sequence) and
 * scrambles each state with the 32-bit finalizer of MurmurHash3, the construction splitmix uses with
 * 64-bit words. Each call costs O(1) and the period is 2^32, enough for sampling but not for
 * cryptography.
 */

/** A source of uniform floats in [0, 1). */
export type RandomSource = () => number;

const TWO_POW_32 = 0x1_0000_0000;

/**
 * Creates a generator whose sequence depends only on `seed`, a safe integer (negative allowed).
 * Throws RangeError for any other seed.
 */
export function createRandom(seed: number): RandomSource {
  if (!Number.isSafeInteger(seed)) {
    throw new RangeError(`random seed must be a safe integer, got ${seed}`);
  }

  // Fold the bits above 2^32 into the state, so seeds that differ only there still differ.
  const high = Math.floor(seed / TWO_POW_32);
  let state = (seed ^ Math.imul(high, 0x85ebca6b)) >>> 0;

  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    z ^= z >>> 16;
    return (z >>> 0) / TWO_POW_32;
  };
}

/**
 * Returns a uniform integer in [0, n). Throws RangeError unless n is a positive safe integer.
 * The draw has 32 bits, so for n far above 2^32 not every integer is reachable.
 */
export function randomInt(random: RandomSource, n: number): number {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`randomInt needs a positive integer bound, got ${n}`);
  }
  return Math.floor(random() * n);
}
