// Errors the daemon reports to the command line: a code for scripts, a one-line message for people.
export class DaemonError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}
