#!/usr/bin/env python3
"""A live view of grimseld's status in the terminal (curses), refreshed every second; q quits."""
import argparse
import curses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grimsel_status import DQueryStatusClient, format_table  # noqa: E402


def bar(row, width=20):
    """Progress of one shift on one storage: copied out of everything it got."""
    total = row['pending'] + row['copied'] + row['failed']
    done = int(width * row['copied'] / total) if total else width
    return '[' + '#' * done + '.' * (width - done) + ']'


def render(rows, host, port):
    """The screen's lines: a title, the table with a progress bar per row."""
    table = format_table(rows).splitlines()
    lines = ['grimseld %s:%d  %s  (q quits)' % (host, port, time.strftime('%H:%M:%S')), '']
    lines.append(table[0])
    lines.append(table[1])
    for text, row in zip(table[2:], rows):
        lines.append('%s  %s' % (text, bar(row)))
    return lines


def run(screen, client, interval):
    curses.curs_set(0)
    screen.timeout(int(interval * 1000))
    while True:
        try:
            lines = render(client.queryStatus(-1), client.host, client.port)
        except (OSError, DQueryStatusClient.StatusError) as e:
            lines = ['grimseld %s:%d: %s (retrying)' % (client.host, client.port, e)]
        screen.erase()
        height, width = screen.getmaxyx()
        for y, text in enumerate(lines[:height]):
            screen.addnstr(y, 0, text, width - 1)
        screen.refresh()
        if screen.getch() in (ord('q'), ord('Q')):
            return


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('host', nargs='?', default='localhost')
    p.add_argument('-p', '--port', type=int, default=DQueryStatusClient.DEFAULT_PORT)
    p.add_argument('-i', '--interval', type=float, default=1.0, help='seconds between refreshes')
    args = p.parse_args(argv)
    curses.wrapper(run, DQueryStatusClient.DQueryStatusClient(args.host, args.port), args.interval)
    return 0


if __name__ == '__main__':
    sys.exit(main())
