import { describe, expect, test } from 'vitest';
import { resolveDriverConfig } from './driver.js';
import { resolveEngineConfig } from './engine.js';
import { ConfigError } from './errors.js';
import { ROUTER_DEFAULTS, resolveRouterConfig } from './router.js';

const engineRequired = {
  node: '1',
  topology: '3x2',
  peers: 'http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3',
  'router-url': 'http://127.0.0.1:9/',
};

describe('router configuration', () => {
  test('uses the defaults without flags or variables', () => {
    const config = resolveRouterConfig({}, {});

    expect(config).toMatchObject({ ...ROUTER_DEFAULTS, tableFile: null, stateFile: null });
    expect(Object.isFrozen(config)).toBe(true);
  });

  test('prefers a flag over its environment variable', () => {
    const env = { GRACE_MOE_ROUTER_PORT: '9000', GRACE_MOE_ROUTER_BODY_LIMIT_BYTES: '4096', GRACE_MOE_LOG_LEVEL: 'warn' };
    const config = resolveRouterConfig({ port: '9001' }, env);

    expect(config.portNumber).toBe(9001);
    expect(config.bodyLimitBytes).toBe(4096);
    expect(config.logLevel).toBe('warn');
  });

  const invalid = [
    ['a port that is not a number', { port: 'http' }, {}, '--port must be an integer from 0 to 65535, got "http"'],
    ['a port out of range', {}, { GRACE_MOE_ROUTER_PORT: '70000' }, 'GRACE_MOE_ROUTER_PORT must be an integer from 0 to 65535, got "70000"'],
    ['a fractional body limit', { 'body-limit-bytes': '1.5' }, {}, '--body-limit-bytes must be an integer from 1024'],
    ['an unknown log level', {}, { GRACE_MOE_LOG_LEVEL: 'loud' }, 'GRACE_MOE_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, silent, got "loud"'],
    ['a host name', { host: 'example.org' }, {}, '--host must be an IP address'],
  ] as const;

  test.each(invalid)('rejects %s', (_name, flags, env, message) => {
    expect(() => resolveRouterConfig(flags, env)).toThrow(ConfigError);
    expect(() => resolveRouterConfig(flags, env)).toThrow(message);
  });
});

describe('engine configuration', () => {
  test('resolves the topology, peers and router URL', () => {
    const config = resolveEngineConfig(engineRequired, {});

    expect(config).toMatchObject({ node: 1, nodes: 3, gpusPerNode: 2, routerUrl: 'http://127.0.0.1:9', routing: 'http' });
    expect(config.peers).toEqual(['http://127.0.0.1:1', 'http://127.0.0.1:2', 'http://127.0.0.1:3']);
  });

  const invalid = [
    ['a missing topology', { ...engineRequired, topology: undefined }, '--topology (or GRACE_MOE_ENGINE_TOPOLOGY) is required'],
    ['a node outside the topology', { ...engineRequired, node: '3' }, '--node must be an integer from 0 to 2, got "3"'],
    ['too few peers', { ...engineRequired, peers: 'http://127.0.0.1:1' }, '--peers must list one engine URL per node (3), got 1'],
    ['a peer that is not a URL', { ...engineRequired, peers: 'a,b,c' }, '--peers must be an http:// or https:// URL, got "a"'],
    ['an unknown routing mode', { ...engineRequired, router: 'grpc' }, '--router must be one of http, in-process, got "grpc"'],
  ] as const;

  test.each(invalid)('rejects %s', (_name, flags, message) => {
    const defined = Object.fromEntries(Object.entries(flags).filter(([, value]) => value !== undefined));
    expect(() => resolveEngineConfig(defined, {})).toThrow(message);
  });
});

describe('driver configuration', () => {
  test('reads engines from the environment', () => {
    const config = resolveDriverConfig({ rate: '500' }, { GRACE_MOE_DRIVE_ENGINES: 'http://127.0.0.1:1, http://127.0.0.1:2' });

    expect(config.engines).toEqual(['http://127.0.0.1:1', 'http://127.0.0.1:2']);
    expect(config.rateTokensPerSecond).toBe(500);
  });

  test('rejects a zero rate', () => {
    expect(() => resolveDriverConfig({ engines: 'http://127.0.0.1:1', rate: '0' }, {})).toThrow('--rate must be a number from 0.001');
  });
});
