/**
 * Reads objects from the test control plane's API server over HTTPS with the credentials of a
 * kubeconfig. Tests that poll many times a second use it instead of starting kubectl every time.
 */
import { request } from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';

const REQUEST_TIMEOUT_MS = 10_000;

/** HTTP status and parsed JSON body of one GET. */
export interface ApiResponse<T> {
  readonly status: number;
  readonly body: T;
}

/** One event of a watch stream. */
export interface WatchEvent<T> {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: T;
}

/** A running watch; `events` grows as the server sends them. */
export interface KubeWatch<T> {
  readonly events: readonly WatchEvent<T>[];
  /** Closes the stream. */
  stop(): void;
}

export interface KubeApiReader {
  /** GETs `path` (such as /apis/apps/v1/namespaces/NS/statefulsets/NAME) and parses the JSON body. */
  get<T>(path: string): Promise<ApiResponse<T>>;
  /**
   * Watches the collection at `collectionPath` from `resourceVersion`, restricted to the object
   * `name`. Resolves once the server accepted the watch, so no later change is missed.
   */
  watch<T>(collectionPath: string, name: string, resourceVersion: string): Promise<KubeWatch<T>>;
}

/** Returns a reader that authenticates as the current user of the kubeconfig at `kubeconfigPath`. */
export function kubeApiReader(kubeconfigPath: string): KubeApiReader {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(kubeconfigPath);
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null) {
    throw new Error(`${kubeconfigPath} has no current cluster`);
  }
  const server = cluster.server.replace(/\/+$/, '');

  return {
    async get<T>(path: string): Promise<ApiResponse<T>> {
      const options: import('node:https').RequestOptions = { method: 'GET', headers: { accept: 'application/json' }, timeout: REQUEST_TIMEOUT_MS };
      await kubeConfig.applyToHTTPSOptions(options);
      return new Promise((resolve, reject) => {
        const outgoing = request(`${server}${path}`, options, (response) => {
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            text += chunk;
          });
          response.on('end', () => {
            try {
              resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as T });
            } catch (error) {
              reject(new Error(`GET ${path} returned ${response.statusCode ?? 0} with a body that is not JSON: ${text.slice(0, 200)}`, { cause: error }));
            }
          });
          response.on('error', reject);
        });
        outgoing.on('timeout', () => outgoing.destroy(new Error(`GET ${path} timed out after ${REQUEST_TIMEOUT_MS} ms`)));
        outgoing.on('error', reject);
        outgoing.end();
      });
    },

    async watch<T>(collectionPath: string, name: string, resourceVersion: string): Promise<KubeWatch<T>> {
      const query = new URLSearchParams({ watch: '1', resourceVersion, fieldSelector: `metadata.name=${name}` });
      const path = `${collectionPath}?${query.toString()}`;
      const options: import('node:https').RequestOptions = { method: 'GET', headers: { accept: 'application/json' } };
      await kubeConfig.applyToHTTPSOptions(options);
      const events: WatchEvent<T>[] = [];
      return new Promise((resolve, reject) => {
        const outgoing = request(`${server}${path}`, options, (response) => {
          if (response.statusCode !== 200) {
            response.resume();
            reject(new Error(`watch ${path} returned ${response.statusCode ?? 0}`));
            return;
          }
          let buffer = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            buffer += chunk;
            let newline = buffer.indexOf('\n');
            while (newline >= 0) {
              const line = buffer.slice(0, newline).trim();
              buffer = buffer.slice(newline + 1);
              if (line !== '') events.push(JSON.parse(line) as WatchEvent<T>);
              newline = buffer.indexOf('\n');
            }
          });
          // Closing the stream in stop() ends the response with an error that is expected.
          response.on('error', () => undefined);
          resolve({ events, stop: () => outgoing.destroy() });
        });
        outgoing.on('error', reject);
        outgoing.end();
      });
    },
  };
}
