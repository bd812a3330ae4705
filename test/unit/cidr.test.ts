// IPv4 CIDR arithmetic: parsing and its errors, membership, usable hosts with the /31 and /32 rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CidrError, broadcastOf, contains, formatCidr, hostAddresses, hostAt, intToIp, ipToInt, isUsableHost, parseCidr, usableCount,
} from '../../src/routes/cidr.js';

test('parseCidr: network, bits, size', () => {
  assert.deepEqual(parseCidr('10.0.0.0/24'), { family: 4, network: 0x0a000000, bits: 24, size: 256 });
  assert.deepEqual(parseCidr('0.0.0.0/0'), { family: 4, network: 0, bits: 0, size: 2 ** 32 });
  assert.deepEqual(parseCidr('255.255.255.255/32'), { family: 4, network: 0xffffffff, bits: 32, size: 1 });
  assert.deepEqual(parseCidr('192.168.128.0/17'), { family: 4, network: 0xc0a88000, bits: 17, size: 32768 });
  assert.equal(formatCidr(parseCidr('172.16.0.0/12')), '172.16.0.0/12');
});

test('parseCidr: clear errors', () => {
  const bad = (text: string, re: RegExp) => assert.throws(() => parseCidr(text), (e: unknown) => e instanceof CidrError && e.code === 'EINVAL' && re.test(e.message), text);
  bad('10.0.0.0/33', /invalid prefix length in 10\.0\.0\.0\/33/);
  bad('10.0.0.0/-1', /invalid prefix length/);
  bad('10.0.0.0/', /invalid prefix length/);
  bad('10.0.0.0/024', /invalid prefix length/);
  bad('10.0.0.0/2x', /invalid prefix length/);
  bad('10.0.0.0', /missing prefix length/);
  bad('10.0.0.5/24', /host bits are set \(did you mean 10\.0\.0\.0\/24\?\)/);
  bad('10.0.0.1/31', /host bits are set/);
  bad('256.0.0.0/8', /invalid IPv4 address: 256\.0\.0\.0/);
  bad('10.0.0/24', /invalid IPv4 address/);
  bad('010.0.0.0/8', /invalid IPv4 address/); // octal ambiguity refused
  bad(' 10.0.0.0/8', /invalid IPv4 address/);
  bad('fd00::/64', /IPv6 ranges are not supported yet/);
  bad('', /missing prefix length/);
});

test('ipToInt / intToIp are inverse and strict', () => {
  for (const ip of ['0.0.0.0', '10.1.2.3', '255.255.255.255', '128.0.0.1']) assert.equal(intToIp(ipToInt(ip)), ip);
  assert.equal(ipToInt('255.255.255.255'), 4294967295); // unsigned, never negative
  assert.equal(ipToInt('128.0.0.0'), 2147483648);
  assert.throws(() => ipToInt('1.2.3.4.5'), CidrError);
  assert.throws(() => ipToInt('1.2.3.-4'), CidrError);
  assert.throws(() => intToIp(2 ** 32), CidrError);
  assert.throws(() => intToIp(-1), CidrError);
});

test('contains: both ends included, neighbours excluded', () => {
  const c = '10.0.1.0/24';
  assert.equal(contains(c, '10.0.1.0'), true);
  assert.equal(contains(c, '10.0.1.255'), true);
  assert.equal(contains(c, '10.0.0.255'), false);
  assert.equal(contains(c, '10.0.2.0'), false);
  assert.equal(contains('0.0.0.0/0', '255.255.255.255'), true);
  assert.equal(contains('128.0.0.0/1', '255.255.255.255'), true); // no sign trouble at the top bit
  assert.equal(contains('128.0.0.0/1', '127.255.255.255'), false);
  assert.equal(contains(parseCidr(c), ipToInt('10.0.1.7')), true);
  assert.equal(contains(c, 'fd00::1'), false); // an IPv6 address is not in an IPv4 range
  assert.throws(() => contains(c, '10.0.1'), CidrError);
});

test('usable hosts: network and broadcast excluded, /31 and /32 per RFC 3021', () => {
  assert.equal(isUsableHost('10.0.0.0/24', '10.0.0.0'), false);
  assert.equal(isUsableHost('10.0.0.0/24', '10.0.0.1'), true);
  assert.equal(isUsableHost('10.0.0.0/24', '10.0.0.254'), true);
  assert.equal(isUsableHost('10.0.0.0/24', '10.0.0.255'), false);
  assert.equal(isUsableHost('10.0.0.0/24', '10.0.1.1'), false);
  assert.equal(usableCount('10.0.0.0/24'), 254);
  assert.equal(usableCount('10.0.0.0/30'), 2);
  assert.equal(broadcastOf('10.0.0.0/30'), ipToInt('10.0.0.3'));

  // /31: a point-to-point link, both addresses are hosts
  assert.equal(usableCount('10.0.0.0/31'), 2);
  assert.equal(isUsableHost('10.0.0.0/31', '10.0.0.0'), true);
  assert.equal(isUsableHost('10.0.0.0/31', '10.0.0.1'), true);
  assert.deepEqual([...hostAddresses('10.0.0.0/31')], ['10.0.0.0', '10.0.0.1']);
  // /32: the one address
  assert.equal(usableCount('10.0.0.7/32'), 1);
  assert.equal(isUsableHost('10.0.0.7/32', '10.0.0.7'), true);
  assert.equal(isUsableHost('10.0.0.7/32', '10.0.0.8'), false);
  assert.deepEqual([...hostAddresses('10.0.0.7/32')], ['10.0.0.7']);
});

test('hostAt and hostAddresses agree and stop at the end', () => {
  const all = [...hostAddresses('192.168.5.0/29')];
  assert.deepEqual(all, ['192.168.5.1', '192.168.5.2', '192.168.5.3', '192.168.5.4', '192.168.5.5', '192.168.5.6']);
  all.forEach((ip, i) => assert.equal(hostAt('192.168.5.0/29', i), ip));
  assert.throws(() => hostAt('192.168.5.0/29', 6), (e: unknown) => e instanceof RangeError && /has 6 usable addresses/.test(e.message));
  assert.throws(() => hostAt('192.168.5.0/29', -1), RangeError);
  assert.throws(() => hostAt('192.168.5.0/29', 1.5), RangeError);
  // lazily: the first hosts of a /8 without building 16M strings
  const it = hostAddresses('10.0.0.0/8');
  assert.equal(it.next().value, '10.0.0.1');
  assert.equal(it.next().value, '10.0.0.2');
  assert.equal(hostAt('10.0.0.0/8', usableCount('10.0.0.0/8') - 1), '10.255.255.254');
  assert.equal(hostAt('0.0.0.0/0', 0), '0.0.0.1');
  assert.equal(hostAt('0.0.0.0/0', usableCount('0.0.0.0/0') - 1), '255.255.255.254');
});
