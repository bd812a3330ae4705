// The control methods: one zod schema per method for its params, and the type of its result. Both
// ends use this table: the daemon's control server checks a call's params before the handler runs
// (a bad call is an EINVAL reply naming the method and the field; the daemon carries on), and the
// command line's calls are typed by it, params and result (`request(path, 'kick', { target })`),
// and checked before they are sent.
//
// The schemas check shape and types only, and refuse unknown fields (a newer command's option an
// older daemon would silently ignore). What a value means (a prefix, a name, a range) is the
// daemon's to judge: its errors say what a person should do.
import { z } from 'zod';
import type { ClientRow, NetcheckReport, PingResult, Status } from '../daemon/daemon.js';
import type { AdvertisedRoute, RouteRow } from '../daemon/subnet-routes.js';

/** A member, by name or mesh address. */
const target = z.string();
const prefixes = z.array(z.string());
const none = z.strictObject({});

export const methods = {
  status: none,
  init: z.strictObject({ network: z.string().optional(), cidr: z.string().optional(), allowOverlap: z.boolean().optional(), domain: z.string().optional() }),
  invite: z.strictObject({ ttlMs: z.number().optional(), uses: z.number().optional() }),
  invites: none,
  cancelInvite: z.strictObject({ id: z.string() }),
  join: z.strictObject({ token: z.string(), allowOverlap: z.boolean().optional() }),
  leave: none,
  kick: z.strictObject({ target }),
  promote: z.strictObject({ target }),
  ping: z.strictObject({ target, timeoutMs: z.number().optional() }),
  netcheck: none,
  routes: none,
  routesAdvertise: z.strictObject({ prefixes, snat: z.boolean().optional() }),
  routesWithdraw: z.strictObject({ prefixes }),
  routesApprove: z.strictObject({ target, prefixes }),
  routesUnapprove: z.strictObject({ target, prefixes }),
  exitNodeUse: z.strictObject({ target, allowLan: z.boolean().optional() }),
  exitNodeOff: none,
  clientAdd: z.strictObject({ name: z.string(), publicKey: z.string().optional(), exitNode: z.boolean().optional() }),
  clients: none,
  clientShow: z.strictObject({ name: z.string() }),
  clientRemove: z.strictObject({ name: z.string() }),
} as const satisfies Record<keyof Results, z.ZodType>;

/** An open invite as every administrator sees it (`meshd invites`). */
export interface OpenInvite {
  id: string;
  /** The issuer's name (its peer id if it is no longer a member). */
  issuer: string;
  expires: number;
  uses: number;
  used: number;
  issued: number;
}

/** A plain WireGuard client's wg-quick config (`meshd client add|show`). */
export interface ClientConfig {
  name: string;
  ip: string;
  config: string;
}

/** What each method answers. */
export interface Results {
  status: Status;
  init: { meshIp: string; network: string };
  invite: { token: string; id: string; expires: number; uses: number };
  invites: { invites: OpenInvite[] };
  cancelInvite: { cancelled: string };
  join: { meshIp: string; network: string; name: string };
  leave: { left: string };
  kick: { kicked: string; meshIp: string };
  promote: { promoted: string };
  ping: PingResult;
  netcheck: NetcheckReport;
  routes: { routes: RouteRow[]; advertisedHere: AdvertisedRoute[] };
  routesAdvertise: { advertised: string[]; approved: string[]; pending: string[] };
  routesWithdraw: { withdrawn: string[] };
  routesApprove: { member: string; approved: string[] };
  routesUnapprove: { member: string; approved: string[] };
  exitNodeUse: { exitNode: string; allowLan: boolean };
  exitNodeOff: { exitNode: null; was: string | null };
  clientAdd: ClientConfig;
  clients: { clients: ClientRow[] };
  clientShow: ClientConfig;
  clientRemove: { removed: string; ip: string };
}

export type MethodName = keyof typeof methods;
export type Params<M extends MethodName> = z.input<(typeof methods)[M]>;
export type Result<M extends MethodName> = Results[M];

/** The daemon's side: one handler per method, given params that passed the method's schema. */
export type MethodHandlers = { [M in MethodName]: (params: z.output<(typeof methods)[M]>) => Promise<Result<M>> };

/** A handler and the schema its params must pass first: what the control server runs (server.ts). */
export interface CheckedHandler {
  params: z.ZodType;
  run: (params: unknown) => Promise<unknown>;
}

/** The daemon's handlers, each paired with its method's schema for the control server. */
export function checkedHandlers(impl: MethodHandlers): Record<MethodName, CheckedHandler> {
  const out = {} as Record<MethodName, CheckedHandler>;
  for (const name of Object.keys(methods) as MethodName[]) {
    out[name] = { params: methods[name], run: impl[name] as (params: unknown) => Promise<unknown> };
  }
  return out;
}

/** The params of `method` that pass `schema`, or one line naming the method and the first wrong field. */
export function checkParams(method: string, schema: z.ZodType, params: unknown): { ok: true; params: unknown } | { ok: false; message: string } {
  const parsed = schema.safeParse(params);
  if (parsed.success) return { ok: true, params: parsed.data };
  return { ok: false, message: `invalid params for ${method}: ${describeIssue(parsed.error.issues[0], params)}` };
}

function describeIssue(issue: z.core.$ZodIssue | undefined, params: unknown): string {
  if (!issue) return 'malformed';
  const field = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => JSON.stringify(k)).join(', ');
    return `unknown field${issue.keys.length > 1 ? 's' : ''} ${keys}${field ? ` in ${field}` : ''}`;
  }
  if (issue.code === 'invalid_type') {
    const value = valueAt(params, issue.path);
    if (value === undefined) return field ? `${field} is missing (expected ${issue.expected})` : `expected ${issue.expected}`;
    return `${field || 'params'} must be ${issue.expected}, not ${typeName(value)}`;
  }
  return `${field ? `${field}: ` : ''}${issue.message}`;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || typeof v !== 'object' || !Object.hasOwn(v, key)) return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}
