// What a libp2p node that cannot listen says to a person. libp2p's own error for a listen address
// it could not open is a paragraph naming its config option, with a stack trace inside; `meshd
// init` and `meshd join` print one line: which port, and what to do about it.

/** A port in use or refused becomes one line (code EADDRINUSE or EACCES); anything else is left as it is. */
export function listenError(err: unknown): Error {
  const text = err instanceof Error ? err.message : String(err);
  const port = (code: string) => new RegExp(`${code}[^\\n]*?:(\\d+)\\s*$`, 'm').exec(text)?.[1] ?? '?';
  if (/EADDRINUSE/.test(text)) {
    return Object.assign(new Error(`TCP port ${port('EADDRINUSE')} is in use: another program (another meshd daemon?) listens on it; stop it, or start meshd daemon with another --p2p-port`), { code: 'EADDRINUSE' });
  }
  if (/EACCES/.test(text)) {
    return Object.assign(new Error(`TCP port ${port('EACCES')} cannot be listened on (permission denied): run meshd as root or pick a --p2p-port above 1023`), { code: 'EACCES' });
  }
  return err instanceof Error ? err : new Error(text);
}
