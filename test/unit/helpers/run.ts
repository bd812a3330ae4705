// run(file, args, env): a program run to its end, with its exit code and output; never rejects
// (a failing program is a result the test asserts on).
import { execFile } from 'node:child_process';

export interface RunResult { code: number; stdout: string; stderr: string }

export function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env } }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}
