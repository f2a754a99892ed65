import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { packageRoot } from '../trace/default.js';
import { customResourceDefinition } from './crd.js';
import { CLUSTER_RULES, generatedFiles } from './manifests.js';

/** Paths of schema nodes that lack a type, which a structural schema does not allow. */
function untyped(schema: Record<string, unknown>, path: string): string[] {
  const missing: string[] = [];
  if (schema.type === undefined && schema['x-kubernetes-int-or-string'] !== true) missing.push(path);
  for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, Record<string, unknown>>)) {
    missing.push(...untyped(child, `${path}.${name}`));
  }
  if (schema.items) missing.push(...untyped(schema.items as Record<string, unknown>, `${path}[]`));
  if (typeof schema.additionalProperties === 'object') missing.push(...untyped(schema.additionalProperties as Record<string, unknown>, `${path}{}`));
  return missing;
}

describe('generated manifests', () => {
  test('every generated file matches its source', async () => {
    const files = await generatedFiles();
    expect(Object.keys(files).length).toBe(6);
    for (const [relative, content] of Object.entries(files)) {
      const onDisk = await readFile(join(packageRoot(), relative), 'utf8').catch(() => '(missing)');
      expect(onDisk, `${relative} is stale: run npm run generate`).toBe(content);
    }
  });

  test('YAML 1.1 readers see the same CRD', async () => {
    // kubectl and the API server read YAML 1.1, where a bare Off is the boolean false.
    const text = (await generatedFiles())['crds/moedeployments.grace-moe.io.yaml'] as string;
    const [document] = parseAllDocuments(text, { version: '1.1' });
    expect(document?.toJS()).toEqual(JSON.parse(JSON.stringify(customResourceDefinition())));
  });

  test('every schema node has a type', () => {
    const crd = customResourceDefinition() as { spec: { versions: { schema: { openAPIV3Schema: Record<string, unknown> } }[] } };
    expect(untyped(crd.spec.versions[0]!.schema.openAPIV3Schema, 'openAPIV3Schema')).toEqual([]);
  });

  test('install.yaml parses into the expected kinds', async () => {
    const documents = parseAllDocuments((await generatedFiles())['manifests/install.yaml'] as string).map((document) => document.toJS() as { kind: string });
    expect(documents.map((document) => document.kind)).toEqual([
      'Namespace',
      'CustomResourceDefinition',
      'ServiceAccount',
      'ClusterRole',
      'ClusterRoleBinding',
      'Role',
      'RoleBinding',
      'Deployment',
    ]);
  });

  test('scale subresource points at the worker count', () => {
    const crd = customResourceDefinition() as { spec: { versions: { subresources: { scale: Record<string, string> } }[] } };
    expect(crd.spec.versions[0]!.subresources.scale).toEqual({
      specReplicasPath: '.spec.workers.nodes',
      statusReplicasPath: '.status.replicas',
      labelSelectorPath: '.status.selector',
    });
  });

  test('the operator may not delete anything', () => {
    for (const rule of CLUSTER_RULES) expect(rule.verbs).not.toContain('delete');
  });
});
