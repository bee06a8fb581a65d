#!/usr/bin/env python3
"""Follows grimseld's messages, one callback per code, and prints them; reconnects when grimseld restarts."""
import argparse
import os
import sys
import time

try:
    from ppu.grimsel import DAbstractMessageClient
except ImportError:  # run from the source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    from ppu.grimsel import DAbstractMessageClient


class MessagePrinter(DAbstractMessageClient.DAbstractMessageClient):
    """Dispatches every message to the callback of its code; override the ones you care about."""

    CALLBACKS = {
        DAbstractMessageClient.FILLSTATE_LIMIT: 'onFillstateLimit',
        DAbstractMessageClient.ALMOST_OVERFLOW: 'onAlmostOverflow',
        DAbstractMessageClient.DISK_OVERFLOW: 'onDiskOverflow',
        DAbstractMessageClient.COPY_ERROR: 'onCopyError',
        DAbstractMessageClient.LINK_ERROR: 'onLinkError',
        DAbstractMessageClient.DEL_ERROR: 'onDelError',
    }

    def __init__(self, host, port, timeout, out=sys.stdout):
        DAbstractMessageClient.DAbstractMessageClient.__init__(self, host, port, timeout)
        self.out = out

    def processMessage(self, errcode, shortMessage, longMessage):
        getattr(self, self.CALLBACKS.get(errcode, 'onUnknown'))(errcode, shortMessage, longMessage)

    def say(self, text):
        self.out.write('%s %s\n' % (time.strftime('%H:%M:%S'), text))
        self.out.flush()

    def onFillstateLimit(self, errcode, mountpoint, text):
        self.say('FILLSTATE_LIMIT %s: %s' % (mountpoint, text))

    def onAlmostOverflow(self, errcode, mountpoint, text):
        self.say('ALMOST_OVERFLOW %s: %s' % (mountpoint, text))

    def onDiskOverflow(self, errcode, mountpoint, text):
        self.say('DISK_OVERFLOW %s: %s' % (mountpoint, text))

    def onCopyError(self, errcode, src_dest, text):
        src, _, dest = src_dest.partition(':')
        self.say('COPY_ERROR %s -> %s: %s' % (src, dest, text))

    def onLinkError(self, errcode, path, text):
        self.say('LINK_ERROR %s: %s' % (path, text))

    def onDelError(self, errcode, path, text):
        self.say('DEL_ERROR %s: %s' % (path, text))

    def onUnknown(self, errcode, short, text):
        self.say('%s %s: %s' % (errcode, short, text))

    def onConnect(self):
        self.say('connected to %s:%d' % (self.host, self.port))

    def onDisconnect(self, reason):
        self.say('disconnected from %s:%d (%s); %s' % (
            self.host, self.port, reason, 'reconnecting in %s s' % self.timeout if self.timeout else 'exiting'))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('host', nargs='?', default='localhost')
    p.add_argument('-p', '--port', type=int, default=DAbstractMessageClient.DEFAULT_PORT)
    p.add_argument('-t', '--timeout', type=float, default=10, help='seconds before reconnecting (0: exit instead)')
    args = p.parse_args(argv)
    try:
        MessagePrinter(args.host, args.port, args.timeout).connect()
    except OSError as e:
        sys.stderr.write('grimsel_messages: %s:%d: %s\n' % (args.host, args.port, e))
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
