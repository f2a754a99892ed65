import { describe, expect, test } from 'vitest';
import { TopologyError } from './errors.js';
import { MAX_GPUS, parseTopologyShape, resolveTopology } from './topology.js';

describe('topology', () => {
  test('defaults to primaries plus redundant slots', () => {
    expect(resolveTopology({ nodes: 2, gpusPerNode: 4 }, 64, { redundantSlotsPerGpu: 2 })).toEqual({ nodes: 2, gpusPerNode: 4, slotsPerGpu: 10 });
    expect(resolveTopology({ nodes: 3, gpusPerNode: 2 }, 64)).toEqual({ nodes: 3, gpusPerNode: 2, slotsPerGpu: 11 });
  });

  test.each([
    { name: 'too few slots', shape: { nodes: 2, gpusPerNode: 4 }, options: { slotsPerGpu: 7 }, message: 'use at least 8 slots per GPU' },
    { name: 'more slots than experts', shape: { nodes: 2, gpusPerNode: 4 }, options: { slotsPerGpu: 65 }, message: 'use at most 64' },
    { name: 'too many GPUs', shape: { nodes: 1000, gpusPerNode: 1000 }, options: {}, message: `at most ${MAX_GPUS} are supported` },
  ] as const)('rejects $name', ({ shape, options, message }) => {
    const run = () => resolveTopology(shape, 64, options);
    expect(run).toThrow(TopologyError);
    expect(run).toThrow(message);
  });

  test.each(['2by4', '0x4', '2x', ''])('rejects shape "%s"', (text) => {
    expect(() => parseTopologyShape(text)).toThrow(TopologyError);
  });
});
