// One compliance suite, every Bind: the real sockets (native, dgram) on loopback, the in-memory
// ChannelBind, and the path layer wrapped around a real and an in-memory one.
import { udpBindFactory } from '../../src/wg/bind.js';
import { Paths } from '../../src/discovery/paths.js';
import { bindSuite } from './helpers/bind-suite.js';
import { ChannelNet } from './helpers/bindtest.js';

bindSuite('native', async () => ({ open: udpBindFactory('native'), ip: '127.0.0.1' }));
bindSuite('dgram', async () => ({ open: udpBindFactory('dgram'), ip: '::1' }));
bindSuite('channel', async () => ({ open: new ChannelNet().factory('192.0.2.1'), ip: '192.0.2.1' }));
bindSuite('paths over native', async () => ({ open: new Paths().bindFactory(udpBindFactory('native')), ip: '127.0.0.1' }));
bindSuite('paths over channel', async () => ({ open: new Paths().bindFactory(new ChannelNet().factory('2001:db8::1')), ip: '2001:db8::1' }));
