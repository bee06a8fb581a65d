#!/usr/bin/env python3
"""Prints grimseld's classic status table: User Time | UID | GID | Storage | Pending | Copied | Failed."""
import argparse
import os
import sys
import time

try:
    from ppu.grimsel import DQueryStatusClient
except ImportError:  # run from the source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    from ppu.grimsel import DQueryStatusClient

HEADER = ('User Time', 'UID', 'GID', 'Storage', 'Pending', 'Copied', 'Failed')


def user_time(usertime):
    """Shift start (microseconds since the epoch) as local time."""
    return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(usertime / 1e6))


def format_table(rows):
    """The status rows as the classic table, one line per shift and storage."""
    body = [(user_time(r['usertime']), str(r['uid']), str(r['gid']), r['storage'],
             str(r['pending']), str(r['copied']), str(r['failed'])) for r in rows]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(HEADER)]

    def line(cells):
        return ' | '.join(c.rjust(widths[i]) if i >= 4 else c.ljust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return '\n'.join([line(HEADER), '-+-'.join('-' * w for w in widths)] + [line(b) for b in body]) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('host', nargs='?', default='localhost')
    p.add_argument('-p', '--port', type=int, default=DQueryStatusClient.DEFAULT_PORT)
    p.add_argument('-n', '--nusers', type=int, default=-1, help='last N shifts (-1: all)')
    args = p.parse_args(argv)
    try:
        rows = DQueryStatusClient.DQueryStatusClient(args.host, args.port).queryStatus(args.nusers)
    except (OSError, DQueryStatusClient.StatusError) as e:
        sys.stderr.write('grimsel_status: %s:%d: %s\n' % (args.host, args.port, e))
        return 1
    sys.stdout.write(format_table(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
