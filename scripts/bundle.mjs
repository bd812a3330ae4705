// bundle.mjs -- `npm run build`'s second step: meshd's two executables, dist/cmd/meshd.js and
// dist/cmd/meshd-engine.js, each bundled in place into one file with what they import (esbuild).
// tsc's modules under dist/ stay as they are: the unit tests import those.
//
// Why: a daemon that loads ~1,000 ES modules from node_modules keeps each one's source text, its
// module record and the loader's bookkeeping for it in memory for as long as it runs, plus code it
// never calls (zod's 40 locales, @noble/curves' secp256k1 and FROST). One file with the comments and
// whitespace gone holds the same code in 17 MB less RSS (bench/memory.ts: 89.6 -> 72.4 MB). Identifiers
// are not mangled: stack traces and logs keep the names in the sources, and the source map next to
// each file (`node --enable-source-maps`) leads back to the TypeScript.
//
// Left out of the bundle: classic-level, whose native addon is found from its own directory in
// node_modules. The addon of our own (src/wg/native.ts) and the systemd template are found from the
// package root, which does not move.
//
// Node's own modules are loaded with require(), not imported: importing one as an ES module builds a
// facade that reads every export, lazy getters included. On Node 22 and later `node:http`'s
// WebSocket, CloseEvent and MessageEvent are such getters, and reading them loads all of undici
// (fetch's HTTP client): 14 MB of RSS for `import http from 'node:http'` against
// `require('node:http')` (Node 24), in a daemon that never makes an HTTP request.
import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { pathToFileURL } from 'node:url';

const BUILTINS = new Set(builtinModules);

/** `import ... from 'node:x'` (or a bare 'x' that is Node's) becomes the bundle's require('node:x'). */
const builtinsByRequire = {
  name: 'builtins-by-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?[a-z_/0-9]+$/ }, (args) => {
      if (args.namespace === 'node-builtin') return { path: args.path, external: true };
      const name = args.path.replace(/^node:/, '');
      if (!args.path.startsWith('node:') && !BUILTINS.has(name)) return undefined;
      return { path: `node:${name}`, namespace: 'node-builtin' };
    });
    b.onLoad({ filter: /.*/, namespace: 'node-builtin' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

const ENTRIES = ['dist/cmd/meshd.js', 'dist/cmd/meshd-engine.js'];

/** How an executable is bundled (bench/memory.ts bundles the daemon's modules the same way). */
export const OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  external: ['classic-level'],
  // The CommonJS packages in the bundle (commander, pino, dns-packet...) call require(): an ES
  // module has none, so it gets one.
  banner: { js: "import { createRequire as __meshdCreateRequire } from 'node:module'; const require = __meshdCreateRequire(import.meta.url);" },
  plugins: [builtinsByRequire],
  logLevel: 'warning',
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  for (const entry of ENTRIES) {
    await build({ ...OPTIONS, entryPoints: [entry], outfile: entry, allowOverwrite: true, sourcemap: 'linked' });
  }
}
