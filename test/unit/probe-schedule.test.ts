// src/daemon/probe-schedule.ts: an idle member in a healthy mesh probes nobody, however many
// members there are; one member the sync cannot reach per round, in turn; members asked about
// (status, ping) and members carrying traffic every round.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProbeSchedule, type ScheduledMember } from '../../src/daemon/probe-schedule.js';

const members = (n: number, bytes: (i: number) => number = () => 0, lost: (i: number) => boolean = () => true): ScheduledMember[] =>
  Array.from({ length: n }, (_, i) => ({ key: `m${i}`, ip: `10.0.0.${i + 2}`, bytes: bytes(i), lost: lost(i) }));

test('idle, every member reached: nobody is probed, whatever the size of the mesh', () => {
  for (const n of [2, 10, 40, 100]) {
    const s = new ProbeSchedule({ now: () => 0 });
    for (let r = 0; r < 2 * n; r++) assert.deepEqual(s.round(members(n, () => 0, () => false)), [], `${n} members, round ${r}`);
  }
});

test('members the sync cannot reach: one per round, in turn, whatever the size of the mesh', () => {
  for (const n of [2, 10, 40]) {
    const s = new ProbeSchedule({ now: () => 0 });
    const seen = new Map<string, number>();
    for (let r = 0; r < 2 * n; r++) {
      const out = s.round(members(n));
      assert.equal(out.length, 1, `${n} members: one probe per round`);
      seen.set(out[0].key, (seen.get(out[0].key) ?? 0) + 1);
    }
    assert.equal(seen.size, n, 'every member in turn');
    assert.ok([...seen.values()].every((c) => c === 2));
  }
  // Only the lost ones: m2 and m7 of 10
  const s = new ProbeSchedule({ now: () => 0 });
  const keys = new Set<string>();
  for (let r = 0; r < 6; r++) for (const t of s.round(members(10, () => 0, (i) => i === 2 || i === 7))) keys.add(t.key);
  assert.deepEqual([...keys].sort(), ['m2', 'm7']);
});

test('asked about: every round for interestMs, then back to turns', () => {
  let now = 0;
  const s = new ProbeSchedule({ now: () => now, interestMs: 300_000 });
  s.round(members(20));
  s.ask(['m3', 'm7']);
  assert.ok(s.askedRecently('m3') && !s.askedRecently('m4'));
  for (let r = 0; r < 5; r++) {
    now += 5_000;
    const keys = s.round(members(20)).map((t) => t.key);
    assert.ok(keys.includes('m3') && keys.includes('m7'), `round ${r}: ${keys}`);
    assert.equal(keys.length, 3, 'the two asked about and one in turn');
  }
  now += 300_001;
  assert.equal(s.round(members(20)).length, 1, 'interest expired');
  assert.ok(!s.askedRecently('m3'));
});

test('traffic: a member whose counters moved more than trafficBytes is probed every round; probes alone do not count', () => {
  const s = new ProbeSchedule({ now: () => 0, trafficBytes: 1024 });
  let bytes = 0;
  s.round(members(10, () => 0));
  // m5 moves 200 bytes a round (a probe and its answer): not traffic
  for (let r = 0; r < 3; r++) {
    bytes += 200;
    assert.equal(s.round(members(10, (i) => (i === 5 ? bytes : 0))).length, 1);
  }
  // then 50 kB a round: traffic
  for (let r = 0; r < 3; r++) {
    bytes += 50_000;
    const keys = s.round(members(10, (i) => (i === 5 ? bytes : 0))).map((t) => t.key);
    assert.ok(keys.includes('m5'), `round ${r}: ${keys}`);
  }
  // traffic stops: back to turns
  assert.equal(s.round(members(10, (i) => (i === 5 ? bytes : 0))).length, 1);
});

test('members that left are forgotten', () => {
  const s = new ProbeSchedule({ now: () => 0 });
  s.ask(['m9']);
  s.round(members(10));
  assert.ok(s.askedRecently('m9'));
  s.round(members(5));
  assert.ok(!s.askedRecently('m9'));
});
