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
    expect(config.deployment).toEqual({ topology: null, layers: null, experts: null });
    expect(Object.isFrozen(config)).toBe(true);
  });

  test('resolves the deployment shape and route limits', () => {
    const env = { GRACE_MOE_ROUTER_LAYERS: '26', GRACE_MOE_ROUTER_ROUTE_MAX_TOKENS: '512' };
    const config = resolveRouterConfig({ topology: '2x4', experts: '64', 'route-body-limit-bytes': '65536' }, env);

    expect(config.deployment).toEqual({ topology: { nodes: 2, gpusPerNode: 4 }, layers: 26, experts: 64 });
    expect(config.routeBodyLimitBytes).toBe(65_536);
    expect(config.routeMaxTokens).toBe(512);
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
    ['a malformed topology', { topology: '2by4' }, {}, '--topology must look like NODESxGPUS (for example 2x4), got "2by4"'],
    ['a topology variable without GPUs', {}, { GRACE_MOE_ROUTER_TOPOLOGY: '2x0' }, 'GRACE_MOE_ROUTER_TOPOLOGY needs at least one node and one GPU per node'],
    ['zero layers', { layers: '0' }, {}, '--layers must be an integer from 1 to 10000, got "0"'],
    ['an expert count variable that is not a number', {}, { GRACE_MOE_ROUTER_EXPERTS: 'many' }, 'GRACE_MOE_ROUTER_EXPERTS must be an integer from 1 to 65536, got "many"'],
    ['a zero token cap', { 'route-max-tokens': '0' }, {}, '--route-max-tokens must be an integer from 1'],
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
    ['a zero pair cap', { ...engineRequired, 'max-compute-pairs': '0' }, '--max-compute-pairs must be an integer from 1 to 100000000, got "0"'],
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
