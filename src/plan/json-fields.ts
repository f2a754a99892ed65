/**
 * Field checks shared by the plan and routing-table parsers. Each throws PlanValidationError
 * naming the JSON path, the value and the expected type.
 */
import { PlanValidationError } from '../errors.js';
import { describeValue } from './validate.js';

export type JsonObject = Record<string, unknown>;

export function requireObject(field: string, value: unknown): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PlanValidationError(field, `must be a JSON object, got ${describeValue(value)}`);
  }
  return value as JsonObject;
}

export function requireArray(field: string, value: unknown): unknown[] {
  if (!Array.isArray(value)) {
    throw new PlanValidationError(field, `must be an array, got ${describeValue(value)}`);
  }
  return value;
}

export function requireNumber(field: string, value: unknown): number {
  if (typeof value !== 'number') {
    throw new PlanValidationError(field, `must be a number, got ${describeValue(value)}`);
  }
  return value;
}

/** Rejects a key of `object` outside `known`; `prefix` is the object's path with a trailing dot. */
export function rejectUnknownFields(prefix: string, object: JsonObject, known: readonly string[]): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      throw new PlanValidationError(`${prefix}${key}`, `is not a known field; expected one of ${known.join(', ')}`);
    }
  }
}
