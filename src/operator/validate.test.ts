import { describe, expect, test } from 'vitest';
import type { MoEDeploymentSpec } from './crd.js';
import { validateSpec } from './validate.js';

const spec: MoEDeploymentSpec = { model: { layers: 26, experts: 64, topK: 6 }, engine: { image: 'e' }, workers: { nodes: 2, gpusPerNode: 4 } };

describe('validateSpec', () => {
  test('resolves defaults', () => {
    const result = validateSpec(spec, { maxGpusPerNode: 8 });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.resolved).toMatchObject({ slotsPerGpu: 9, mode: 'Observe', strategy: 'grace', dispatch: 'hierarchical', routerPort: 8470, enginePort: 8000 });
  });

  test.each([
    { change: { model: { layers: 26, experts: -3, topK: 6 } }, field: 'spec.model.experts' },
    { change: { model: { layers: 26, experts: 64, topK: 70 } }, field: 'spec.model.topK' },
    { change: { workers: { nodes: 0, gpusPerNode: 4 } }, field: 'spec.workers.nodes' },
    { change: { placement: { slotsPerGpu: 7 } }, field: 'spec.placement.slotsPerGpu' },
    { change: { placement: { nonUniformity: 2 } }, field: 'spec.placement.nonUniformity' },
    { change: { rebalance: { minGain: 1.5 } }, field: 'spec.rebalance.minGain' },
    { change: { engine: { image: '  ' } }, field: 'spec.engine.image' },
  ] as const)('rejects $field', ({ change, field }) => {
    const result = validateSpec({ ...spec, ...change } as MoEDeploymentSpec, { maxGpusPerNode: 8 });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.violations.map((violation) => violation.field)).toContain(field);
  });

  test('zero experts gives one violation', () => {
    const result = validateSpec({ ...spec, model: { layers: 26, experts: 0, topK: 6 } }, { maxGpusPerNode: 8 });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.violations.map((violation) => violation.message)).toEqual(['spec.model.experts must be a positive integer, got 0']);
  });

  test('checks GPUs per node against node capacity', () => {
    const result = validateSpec(spec, { maxGpusPerNode: 2 });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.violations[0]?.message).toBe(
      'spec.workers.gpusPerNode is 4 but no node offers more than 2 nvidia.com/gpu; lower it or add nodes with more GPUs',
    );
  });

  test('skips the capacity check when nodes are unknown', () => {
    expect(validateSpec({ ...spec, workers: { nodes: 2, gpusPerNode: 64 } }, { maxGpusPerNode: null }).ok).toBe(true);
  });
});
