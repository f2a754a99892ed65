import { describe, expect, test } from 'vitest';
import { ConfigError } from './errors.js';
import { OPERATOR_DEFAULTS, operatorConfigWith, resolveOperatorConfig } from './operator.js';

const leaseNamespace = { GRACE_MOE_OPERATOR_LEASE_NAMESPACE: 'grace-moe-system' };

describe('operator configuration', () => {
  test('uses the defaults with only the lease namespace set', () => {
    const config = resolveOperatorConfig({}, leaseNamespace, 'grace-moe-operator-5c7d9-x2x4q');

    expect(config).toEqual({
      ...OPERATOR_DEFAULTS,
      namespace: null,
      kubeconfig: null,
      leaseNamespace: 'grace-moe-system',
      podName: 'grace-moe-operator-5c7d9-x2x4q',
      endpointsFile: null,
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  test('prefers a flag over its environment variable', () => {
    const env = {
      ...leaseNamespace,
      GRACE_MOE_OPERATOR_WORKERS: '8',
      GRACE_MOE_OPERATOR_NAMESPACE: 'team-a',
      GRACE_MOE_OPERATOR_POD_NAME: 'from-env',
      GRACE_MOE_LOG_LEVEL: 'debug',
    };

    const config = resolveOperatorConfig({ workers: '3', 'retry-cap-ms': '60000' }, env, 'host');

    expect(config.workers).toBe(3);
    expect(config.namespace).toBe('team-a');
    expect(config.podName).toBe('from-env');
    expect(config.retryCapMs).toBe(60_000);
    expect(config.logLevel).toBe('debug');
  });

  test('needs no lease namespace without leader election', () => {
    const config = resolveOperatorConfig({ 'leader-election': 'false' }, {}, 'host');

    expect(config.leaderElection).toBe(false);
    expect(config.leaseNamespace).toBeNull();
  });

  const invalid = [
    ['leader election without a lease namespace', {}, {}, '--lease-namespace (or GRACE_MOE_OPERATOR_LEASE_NAMESPACE) is required with leader election'],
    ['a non-boolean leader election', { 'leader-election': 'yes' }, leaseNamespace, '--leader-election must be one of true, false, got "yes"'],
    ['zero workers', { workers: '0' }, leaseNamespace, '--workers must be an integer from 1 to 64, got "0"'],
    [
      'a renew deadline longer than the lease',
      { 'renew-deadline-ms': '20000' },
      leaseNamespace,
      'leader election needs --retry-period-ms < --renew-deadline-ms < --lease-duration-ms, got 2000, 20000 and 15000',
    ],
    [
      'an idle timeout below twice the watch timeout',
      {},
      { ...leaseNamespace, GRACE_MOE_OPERATOR_IDLE_TIMEOUT_MS: '600000' },
      '--idle-timeout-ms must exceed twice --watch-timeout-seconds (600000 ms), got 600000',
    ],
    ['a retry base above the cap', { 'retry-base-ms': '10000', 'retry-cap-ms': '5000' }, leaseNamespace, '--retry-base-ms must not exceed --retry-cap-ms'],
    ['a jitter ratio above 1', { 'retry-jitter-ratio': '1.5' }, leaseNamespace, '--retry-jitter-ratio must be a number from 0 to 1, got "1.5"'],
    ['a blank namespace', { namespace: ' ' }, leaseNamespace, '--namespace must be a non-empty value'],
  ] as const;

  test.each(invalid)('rejects %s', (_name, flags, env, message) => {
    expect(() => resolveOperatorConfig(flags, env, 'host')).toThrow(ConfigError);
    expect(() => resolveOperatorConfig(flags, env, 'host')).toThrow(message);
  });

  test('operatorConfigWith replaces only the given settings', () => {
    const config = operatorConfigWith({ workers: 5 });

    expect(config.workers).toBe(5);
    expect(config.leaseDurationMs).toBe(OPERATOR_DEFAULTS.leaseDurationMs);
    expect(config.namespace).toBeNull();
  });
});
