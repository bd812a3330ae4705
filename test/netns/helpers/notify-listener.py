#!/usr/bin/env python3
# A service manager's end of sd_notify(3) for test/netns/service.test.ts (node has no unix
# datagram sockets). Binds the AF_UNIX datagram socket argv[1] (a path, or '@name' for an abstract
# one) and prints one JSON line per datagram received. For READY=1 it first checks, at that moment,
# what systemd's promise rests on: the daemon's control socket argv[2] answers a status request
# (its result goes in the line), and its interface argv[3] exists (run it in the daemon's namespace).
import json
import os
import socket
import sys
import time

addr, control, ifname = sys.argv[1], sys.argv[2], sys.argv[3]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind('\0' + addr[1:] if addr.startswith('@') else addr)
print(json.dumps({'listening': addr}), flush=True)


def status_answers():
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(control)
            c.sendall(b'{"id":1,"method":"status"}\n')
            data = b''
            while not data.endswith(b'\n'):
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            reply = json.loads(data)
            return reply['result'] if reply.get('ok') is True else 'no: %s' % reply
    except Exception as e:  # noqa: BLE001 - any failure means: not answering
        return 'no: %s' % e


while True:
    msg = sock.recv(4096).decode()
    line = {'message': msg, 'at': time.time()}
    if 'READY=1' in msg.split('\n'):
        line['status'] = status_answers()
        line['interface'] = os.path.exists('/sys/class/net/' + ifname)
    print(json.dumps(line), flush=True)
