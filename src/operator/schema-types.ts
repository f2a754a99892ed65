/**
 * Type-level translation of the OpenAPI v3 schemas this project writes (objects, arrays, strings,
 * integers, numbers, booleans, enums, and x-kubernetes-preserve-unknown-fields), so the CRD's
 * schema is the one source of truth for the TypeScript types of MoEDeployment.
 */
type Schema = { readonly type?: string; readonly [key: string]: unknown };

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type PropertiesOf<S> = S extends { readonly properties: infer P } ? P : Record<string, never>;
type RequiredOf<S> = S extends { readonly required: readonly (infer R)[] } ? R & string : never;

type ObjectOf<S> =
  S extends { readonly 'x-kubernetes-preserve-unknown-fields': true }
    ? Record<string, unknown>
    : S extends { readonly additionalProperties: infer A }
      ? A extends Schema
        ? Record<string, FromSchema<A>>
        : Record<string, unknown>
      : Simplify<
          { readonly [K in keyof PropertiesOf<S> as K extends RequiredOf<S> ? K : never]: FromSchema<PropertiesOf<S>[K]> } & {
            readonly [K in keyof PropertiesOf<S> as K extends RequiredOf<S> ? never : K]?: FromSchema<PropertiesOf<S>[K]>;
          }
        >;

/** The TypeScript type a schema describes. */
export type FromSchema<S> = S extends { readonly enum: readonly (infer E)[] }
  ? E
  : S extends { readonly type: 'string' }
    ? string
    : S extends { readonly type: 'integer' | 'number' }
      ? number
      : S extends { readonly type: 'boolean' }
        ? boolean
        : S extends { readonly type: 'array'; readonly items: infer I }
          ? readonly FromSchema<I>[]
          : S extends { readonly type: 'object' }
            ? ObjectOf<S>
            : S extends { readonly 'x-kubernetes-int-or-string': true }
              ? number | string
              : unknown;
