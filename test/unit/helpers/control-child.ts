// A control server in a process of its own, so a test can give it its own open-file limit and
// read its memory: `node control-child.js <socket path> [limits as JSON]`. Handlers: echo and
// connections (how many it serves). Prints one JSON line, { limits }, once listening; warnings
// and errors go to stderr as pino lines; runs until SIGTERM.
import { ControlServer } from '../../../src/control/server.js';
import { createLogger } from '../../../src/util/log.js';

const [path, limits] = process.argv.slice(2);
let server: ControlServer | undefined;
server = await ControlServer.listen(path, {
  echo: async (p) => p,
  connections: async () => server?.connections,
}, createLogger('control-child', 'warn'), limits ? JSON.parse(limits) : {});
console.log(JSON.stringify({ limits: server.limits }));
process.once('SIGTERM', () => void server?.close().then(() => process.exit(0)));
