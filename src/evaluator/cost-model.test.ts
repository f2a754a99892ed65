import { describe, expect, test } from 'vitest';

import { UsageError } from '../errors.js';
import { HARDWARE_PRESETS, hardwarePreset, MODEL_SHAPES, modelShapeFor, unitCosts } from './cost-model.js';

describe('unitCosts', () => {
  test('DeepSeek-V2-Lite on a100-25gbe', () => {
    const units = unitCosts({ model: modelShapeFor('deepseek-v2-lite'), hardware: hardwarePreset('a100-25gbe') });

    // Hidden size 2048 in bf16.
    expect(units.bytesPerCopy).toBe(4096);
    // Gate, up and down projections of 2048 x 1408, two flops per multiply-add, at 150 TFLOP/s.
    expect(units.secondsPerPair).toBe((6 * 2048 * 1408) / 150e12);
    expect(units.secondsPerPair).toBeCloseTo(1.1534336e-7, 15);
    // 25 Gbit/s Ethernet per node shared by 4 GPUs: 781.25 MB/s per GPU.
    expect(units.secondsPerInterByte).toBe(1 / (25e9 / 8 / 4));
    expect(1 / units.secondsPerInterByte).toBeCloseTo(781_250_000, 3);
    expect(units.secondsPerIntraByte).toBe(1 / 200e9);
    expect(units.intraLatency).toBe(5e-6);
    expect(units.interLatency).toBe(25e-6);
  });

  test('h200-400g network per GPU', () => {
    const units = unitCosts({ model: modelShapeFor('deepseek-v3'), hardware: hardwarePreset('h200-400g') });

    expect(units.bytesPerCopy).toBe(7168 * 2);
    expect(units.secondsPerPair).toBe((6 * 7168 * 2048) / 500e12);
    expect(units.secondsPerInterByte).toBe(1 / 50e9);
    expect(units.secondsPerIntraByte).toBe(1 / 350e9);
  });
});

describe('hardwarePreset', () => {
  test.each(Object.keys(HARDWARE_PRESETS))('returns preset %s', (name) => {
    expect(hardwarePreset(name).name).toBe(name);
  });

  test('unknown preset lists the names', () => {
    let thrown: unknown;
    try {
      hardwarePreset('tpu-v5');
    } catch (error) {
      thrown = error;
    }

    expect(thrown).toBeInstanceOf(UsageError);
    expect((thrown as UsageError).code).toBe('USAGE');
    expect((thrown as UsageError).message).toContain('"tpu-v5"');
    expect((thrown as UsageError).message).toContain('a100-25gbe, h200-400g');
  });
});

describe('modelShapeFor', () => {
  const shapeCases = [
    { description: 'deepseek-ai/DeepSeek-V2-Lite', shape: 'deepseek-v2-lite' },
    { description: 'deepseek-ai/ESFT-vanilla-lite', shape: 'deepseek-v2-lite' },
    { description: 'deepseek-ai/DeepSeek-V3', shape: 'deepseek-v3' },
    { description: 'deepseek-ai/DeepSeek-R1-0528', shape: 'deepseek-v3' },
    { description: 'allenai/OLMoE-1B-7B-0924', shape: 'olmoe' },
    { description: 'Qwen/Qwen3-30B-A3B', shape: 'qwen3-30b-a3b' },
    { description: 'mistralai/Mixtral-8x7B-Instruct-v0.1', shape: 'mixtral-8x7b' },
    { description: 'some unknown model', shape: 'deepseek-v2-lite' },
  ] as const;

  test.each(shapeCases)('maps $description to $shape', ({ description, shape }) => {
    expect(modelShapeFor(description)).toEqual(MODEL_SHAPES[shape]);
  });
});
