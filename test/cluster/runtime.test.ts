/**
 * Integration check of the operator's controller runtime against a real API server. It installs
 * the CRD and reconciles a MoEDeployment with a stand-in reconciler that applies one owned
 * ConfigMap, writes its status and records an event. Deleting that child must bring its owner
 * back to the queue, and shutdown must release the lease.
 *
 * It starts its own control plane (test/support/control-plane.ts) and runs with the cluster suite.
 */
import { randomBytes } from 'node:crypto';
import { KubeConfig } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { moeDeploymentKinds, runController, type ControllerHandle, type MoEChildKindName } from '../../src/operator/controller.js';
import { API_VERSION, customResourceDefinition, GROUP, KIND, PLURAL } from '../../src/operator/crd.js';
import { isNotFound, KubeClient, RESOURCES } from '../../src/operator/kube-client.js';
import type { KubeObject } from '../../src/operator/kube-types.js';
import { waitFor } from '../../src/operator/manual-scheduler.js';
import { startControlPlane, type ControlPlane } from '../support/control-plane.js';

const NAMESPACE = `grace-moe-runtime-${randomBytes(3).toString('hex')}`;
const FIELD_MANAGER = 'grace-moe-runtime-test';
const logger = pino({ level: process.env.GRACE_MOE_TEST_LOG_LEVEL ?? 'silent' });

describe('controller runtime against a real API server', () => {
  const kubeConfig = new KubeConfig();
  let plane: ControlPlane | undefined;
  let client: KubeClient;
  // Aborted after the test as well, so that a failed assertion does not leave the controller running.
  const stop = new AbortController();
  let handle: ControllerHandle<'moedeployments' | MoEChildKindName> | undefined;

  beforeAll(async () => {
    plane = await startControlPlane();
    kubeConfig.loadFromFile(plane.kubeconfigPath);
    client = new KubeClient({ kubeConfig, logger });
    await client.request({
      method: 'PATCH',
      path: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${PLURAL}.${GROUP}`,
      query: { fieldManager: FIELD_MANAGER, force: 'true' },
      body: customResourceDefinition(),
      contentType: 'application/apply-patch+yaml',
    });
    let established = false;
    const deadline = Date.now() + 30_000;
    while (!established && Date.now() < deadline) {
      const crd = (await client.request({ method: 'GET', path: `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${PLURAL}.${GROUP}` })) as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      established = crd.status?.conditions?.some((condition) => condition.type === 'Established' && condition.status === 'True') ?? false;
      if (!established) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(established).toBe(true);
    await client.create(RESOURCES.namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
  }, 180_000);

  afterAll(async () => {
    stop.abort();
    await handle?.done;
    await client?.delete(RESOURCES.namespaces, undefined, NAMESPACE).catch(() => undefined);
    await plane?.stop();
  }, 60_000);

  test('reconciles, follows a deleted child and releases the lease', async () => {
    await client.apply(
      {
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name: 'ds', namespace: NAMESPACE },
        spec: { model: { layers: 2, experts: 8, topK: 2 }, engine: { image: 'example.invalid/engine:1' }, workers: { nodes: 1 } },
      },
      FIELD_MANAGER,
    );
    let reconciles = 0;
    let recordedEvents = 0;
    const kinds = moeDeploymentKinds('grace-moe.io/deployment');
    const controller = runController({
      kubeConfig,
      namespace: NAMESPACE,
      primary: kinds.primary,
      children: kinds.children,
      workers: 1,
      leaderElection: {
        namespace: NAMESPACE,
        leaseName: 'grace-moe-operator',
        identity: 'runtime-test-0001',
        leaseDurationMs: 15_000,
        renewDeadlineMs: 10_000,
        retryPeriodMs: 2_000,
      },
      logger,
      registry: new Registry(),
      signal: stop.signal,
      reconciler: ({ caches, writer }) => ({
        async reconcile(key) {
          reconciles += 1;
          const owner = caches.moedeployments.get(key.namespace, key.name);
          if (owner === undefined) return {};
          const child: KubeObject = {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            metadata: {
              name: `${key.name}-plan`,
              namespace: key.namespace,
              ownerReferences: [
                { apiVersion: API_VERSION, kind: KIND, name: owner.metadata.name, uid: owner.metadata.uid ?? '', controller: true, blockOwnerDeletion: true },
              ],
            },
            data: { generation: '1' },
          };
          await writer.apply(child, FIELD_MANAGER);
          await writer.applyStatus({ apiVersion: API_VERSION, kind: KIND, metadata: { name: key.name, namespace: key.namespace }, status: { replicas: 1 } }, FIELD_MANAGER);
          await writer.event(owner, 'Normal', 'PlanApplied', 'applied the plan ConfigMap');
          recordedEvents += 1;
          return {};
        },
      }),
    });
    handle = controller;

    await waitFor('the first reconcile and its ConfigMap', () => reconciles >= 1 && controller.caches.configmaps.get(NAMESPACE, 'ds-plan') !== undefined, 30_000);
    expect(controller.readiness()).toMatchObject({ synced: true, leader: true, identity: 'runtime-test-0001' });
    await waitFor('the status in the cache', () => controller.caches.moedeployments.get(NAMESPACE, 'ds')?.status !== undefined, 30_000);
    expect(controller.caches.moedeployments.get(NAMESPACE, 'ds')?.status).toEqual({ replicas: 1 });
    await waitFor('the event', () => recordedEvents > 0, 30_000);
    const events = await client.list(RESOURCES.events, NAMESPACE);
    expect(events.items.map((event) => [event.reason, event.note, (event.regarding as { name?: string }).name])).toContainEqual([
      'PlanApplied',
      'applied the plan ConfigMap',
      'ds',
    ]);
    const before = reconciles;

    await client.delete(RESOURCES.configMaps, NAMESPACE, 'ds-plan');
    await waitFor('a reconcile caused by the deleted child', () => reconciles > before, 30_000);
    await waitFor('the ConfigMap to come back', () => controller.caches.configmaps.get(NAMESPACE, 'ds-plan') !== undefined, 30_000);

    stop.abort();
    await expect(controller.done).resolves.toEqual({ reason: 'shutdown', drained: true });
    const lease = await client.get(RESOURCES.leases, NAMESPACE, 'grace-moe-operator').catch((error: unknown) => (isNotFound(error) ? undefined : Promise.reject(error)));
    expect((lease?.spec as { holderIdentity?: string } | undefined)?.holderIdentity).toBeUndefined();
  }, 90_000);
});
