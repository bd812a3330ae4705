// `meshd client`: phones and laptops with plain WireGuard. `add` (administrators) admits a device
// hosted by this member and prints its wg-quick config (only that, on stdout: `> phone.conf`), or
// a QR code of it (--qr) or a PNG (--qr-png FILE); `show` prints it again on its host; `list`;
// `remove` (administrators) cuts it off everywhere.
import { Command } from 'commander';
import { open, unlink } from 'node:fs/promises';
import QRCode from 'qrcode';
import type { ClientRow } from '../src/daemon/daemon.js';
import type { ClientConfig } from '../src/control/methods.js';
import { jsonOption, print, rpc } from './common.js';

/** Half-block characters: two modules a character row, one a column; refused wider than 80. */
async function terminalQr(text: string): Promise<string> {
  const qr = await QRCode.toString(text, { type: 'utf8', errorCorrectionLevel: 'L', margin: 2 });
  const width = Math.max(...qr.split('\n').map((l) => [...l].length));
  if (width > 80) throw new Error(`the config makes a QR code ${width} columns wide, more than a terminal's 80: use --qr-png FILE`);
  return qr;
}

function table(rows: ClientRow[]): string {
  if (rows.length === 0) return 'no clients (meshd client add NAME on the member that should host it)';
  const body = rows.map((r) => [r.name, r.ip, r.host + (r.hostedHere ? ' (this node)' : ''), r.lastHandshake ? new Date(r.lastHandshake).toISOString() : r.hostedHere ? 'never' : '-']);
  const head = ['NAME', 'MESH IP', 'HOST', 'LAST HANDSHAKE'];
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  return [head, ...body].map((row) => row.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd()).join('\n');
}

/** Prints a client's config as asked: JSON, a QR code, or the config itself; and a PNG. */
async function output(cmd: Command, r: ClientConfig, opts: { qr?: boolean }, png: { path: string; fh: import('node:fs/promises').FileHandle } | null): Promise<void> {
  if (png) {
    await png.fh.write(await QRCode.toBuffer(r.config, { type: 'png', errorCorrectionLevel: 'L', margin: 4, scale: 6 }));
    await png.fh.close();
  }
  if (opts.qr) {
    process.stdout.write(await terminalQr(r.config));
    return;
  }
  const { json } = cmd.opts() as { json?: boolean };
  process.stdout.write(json ? `${JSON.stringify(r, null, 2)}\n` : r.config);
}

/** The PNG file is made (0600: it holds the private key) before the daemon is asked: a path we cannot write changes nothing. */
async function openPng(path: string | undefined): Promise<{ path: string; fh: import('node:fs/promises').FileHandle } | null> {
  if (path === undefined) return null;
  try {
    return { path, fh: await open(path, 'wx', 0o600) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'EEXIST' ? `${path} exists already: give a new file for --qr-png` : `cannot write ${path}: ${(err as Error).message}`);
  }
}

async function withPng<T>(path: string | undefined, run: (png: Awaited<ReturnType<typeof openPng>>) => Promise<T>): Promise<T> {
  const png = await openPng(path);
  try {
    return await run(png);
  } catch (err) {
    if (png) {
      await png.fh.close().catch(() => {});
      await unlink(png.path).catch(() => {});
    }
    throw err;
  }
}

export function clientCommand(): Command {
  const client = new Command('client')
    .description('phones and laptops with plain WireGuard, hosted by a member: add, list, show, remove');

  client.addCommand(new Command('add')
    .description('admit a plain WireGuard device hosted by this node and print its wg-quick config (administrators only)')
    .argument('<name>', 'the device\'s name (unique among members and clients)')
    .option('--qr', 'print the config as a QR code (for the WireGuard app) instead of text')
    .option('--qr-png <file>', 'also write the config as a QR code PNG (a new file, mode 0600)')
    .option('--public-key <key>', 'the device made its own key pair: its public key (the config then leaves PrivateKey to fill in)')
    .option('--exit-node', 'all the device\'s traffic through this node (it must be an approved exit node)')
    .addOption(jsonOption())
    .action(async (name: string, opts: { qr?: boolean; qrPng?: string; publicKey?: string; exitNode?: boolean }, cmd: Command) => {
      await withPng(opts.qrPng, async (png) => {
        const r = await rpc(cmd, 'clientAdd', { name, publicKey: opts.publicKey, exitNode: opts.exitNode === true });
        await output(cmd, r, opts, png);
      });
    }));

  client.addCommand(new Command('list')
    .description('every client in the network and the member that hosts it')
    .addOption(jsonOption())
    .action(async (_opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'clients', {});
      print(cmd, r, () => table(r.clients));
    }));

  client.addCommand(new Command('show')
    .description('print a client\'s config again (on the member that hosts it)')
    .argument('<name>', 'the client\'s name or mesh address')
    .option('--qr', 'as a QR code')
    .option('--qr-png <file>', 'also write it as a QR code PNG (a new file, mode 0600)')
    .addOption(jsonOption())
    .action(async (name: string, opts: { qr?: boolean; qrPng?: string }, cmd: Command) => {
      await withPng(opts.qrPng, async (png) => {
        const r = await rpc(cmd, 'clientShow', { name });
        await output(cmd, r, opts, png);
      });
    }));

  client.addCommand(new Command('remove')
    .description('cut a client off everywhere (administrators only)')
    .argument('<name>', 'the client\'s name or mesh address')
    .addOption(jsonOption())
    .action(async (name: string, _opts: object, cmd: Command) => {
      const r = await rpc(cmd, 'clientRemove', { name });
      print(cmd, r, () => `removed client ${r.removed} (${r.ip})`);
    }));
  return client;
}
