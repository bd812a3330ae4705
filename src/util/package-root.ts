// Where meshd's package is installed: the native addon, the systemd unit's template and the
// executables are found from there, whether this runs as tsc's modules (dist/src/...) or bundled
// (dist/cmd/meshd.js).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the nearest directory at or above `from` (this file's) that holds package.json. */
export function packageRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find meshd's package root above ${from}`);
  }
}
