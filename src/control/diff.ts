/**
 * Differences between two plans, per layer and GPU: the instances the next plan adds (which engines
 * must load before the switch) and the ones it drops (which engines free after it). A move is one
 * added instance.
 */
import type { Plan, PlanLayer } from '../plan/types.js';

export interface InstanceChange {
  readonly layer: number;
  readonly gpu: number;
  readonly expert: number;
}

export interface PlanDiff {
  readonly added: readonly InstanceChange[];
  readonly removed: readonly InstanceChange[];
  /** Added instances per layer. */
  readonly movesPerLayer: readonly number[];
}

function layerChanges(layer: number, from: PlanLayer, to: PlanLayer): { added: InstanceChange[]; removed: InstanceChange[] } {
  const added: InstanceChange[] = [];
  const removed: InstanceChange[] = [];
  to.slots.forEach((experts, gpu) => {
    const before = new Set(from.slots[gpu] ?? []);
    for (const expert of experts) if (!before.has(expert)) added.push({ layer, gpu, expert });
  });
  from.slots.forEach((experts, gpu) => {
    const after = new Set(to.slots[gpu] ?? []);
    for (const expert of experts) if (!after.has(expert)) removed.push({ layer, gpu, expert });
  });
  return { added, removed };
}

/** Diffs two plans of the same model and topology. */
export function diffPlans(from: Plan, to: Plan): PlanDiff {
  const added: InstanceChange[] = [];
  const removed: InstanceChange[] = [];
  const movesPerLayer: number[] = [];
  to.layers.forEach((layer, index) => {
    const changes = layerChanges(index, from.layers[index] ?? { slots: [], weights: [] }, layer);
    added.push(...changes.added);
    removed.push(...changes.removed);
    movesPerLayer.push(changes.added.length);
  });
  return { added, removed, movesPerLayer };
}
