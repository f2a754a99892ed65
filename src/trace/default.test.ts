import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { defaultTracePath } from './default.js';

describe('defaultTracePath', () => {
  test('points at the shipped trace beside package.json', () => {
    const path = defaultTracePath();
    const root = dirname(dirname(dirname(path)));

    expect(path.endsWith(join('data', 'traces', 'deepseek_v2_lite_esft.jsonl.gz'))).toBe(true);
    expect(existsSync(path)).toBe(true);
    expect(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))).toMatchObject({ name: 'grace-moe' });
  });
});
