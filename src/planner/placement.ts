import { PlanValidationError } from '../errors.js';

export interface LayerShape {
  readonly experts: number;
  readonly nodes: number;
  readonly gpusPerNode: number;
  readonly slotsPerGpu: number;
}

/** Mutable instance placement of one layer while a planner builds it. */
export class LayerPlacement {
  readonly gpus: number;
  readonly slots: number[][];
  private readonly instanceGpus: number[][];
  private instances = 0;

  constructor(readonly shape: LayerShape) {
    this.gpus = shape.nodes * shape.gpusPerNode;
    this.slots = Array.from({ length: this.gpus }, () => []);
    this.instanceGpus = Array.from({ length: shape.experts }, () => []);
  }

  /** Places an instance of `expert` on `gpu`; throws when the GPU is full or already holds it. */
  add(gpu: number, expert: number): void {
    const slots = this.slots[gpu];
    if (slots.length >= this.shape.slotsPerGpu) {
      throw new PlanValidationError(`slots[${gpu}]`, `GPU ${gpu} has no free slot for expert ${expert}`);
    }
    if (slots.includes(expert)) {
      throw new PlanValidationError(`slots[${gpu}]`, `GPU ${gpu} already holds expert ${expert}`);
    }
    slots.push(expert);
    this.instances++;
    const list = this.instanceGpus[expert];
    let at = list.length;
    while (at > 0 && list[at - 1] > gpu) at--;
    list.splice(at, 0, gpu);
  }

  /** Removes the instance of `expert` from `gpu`; throws when the GPU does not hold it. */
  remove(gpu: number, expert: number): void {
    const slots = this.slots[gpu];
    const at = slots.lastIndexOf(expert);
    if (at < 0) throw new PlanValidationError(`slots[${gpu}]`, `GPU ${gpu} does not hold expert ${expert}`);
    slots.splice(at, 1);
    this.instances--;
    const list = this.instanceGpus[expert];
    list.splice(list.indexOf(gpu), 1);
  }

  holds(gpu: number, expert: number): boolean {
    return this.slots[gpu].includes(expert);
  }

  free(gpu: number): number {
    return this.shape.slotsPerGpu - this.slots[gpu].length;
  }

  totalFree(): number {
    return this.gpus * this.shape.slotsPerGpu - this.instances;
  }

  /** GPUs holding an instance of `expert`, ascending. */
  instancesOf(expert: number): readonly number[] {
    return this.instanceGpus[expert];
  }

  nodeOf(gpu: number): number {
    return Math.floor(gpu / this.shape.gpusPerNode);
  }

  hasInstanceOnNode(expert: number, node: number): boolean {
    return this.instanceGpus[expert].some((gpu) => this.nodeOf(gpu) === node);
  }

  clone(): LayerPlacement {
    const copy = new LayerPlacement(this.shape);
    this.slots.forEach((slots, gpu) => slots.forEach((expert) => copy.add(gpu, expert)));
    return copy;
  }
}
