"""grimseld's status over TCP (G9): per shift and storage, pending, copied and failed files.

Protocol: send ``QUERY <n>\\n``; grimseld answers one JSON line, a list of rows (newest shift first) or
``{"error": "..."}``. A connection grimseld refuses (a limit reached: 8 per local user or remote address, 64 in
all) reads ``{"error": "refused: ..."}`` and is closed: queryStatus() raises StatusError with that reason.
Each user (or remote address) gets 20 answers at once, then 10 a second: requests beyond that wait their turn.
"""
import json
import socket

DEFAULT_PORT = 47199

#: The keys of every row queryStatus() returns.
KEYS = ('usertime', 'uid', 'gid', 'storage', 'pending', 'copied', 'failed')

# The longest answer line read (grimseld's are a few hundred bytes a shift and storage): a service that streams
# without a newline fails the query, instead of filling the caller's memory for as long as it streams.
MAX_LINE = 16 * 1024 * 1024


class StatusError(Exception):
    """grimseld refused the request or answered something that is not a status."""


class DQueryStatusClient(object):
    """Asks grimseld for the status of the last shifts.

    >>> DQueryStatusClient('localhost', 47199).queryStatus(1)
    [{'usertime': 1764000000000000, 'uid': 500, 'gid': 501, 'storage': 'internal',
      'pending': 0, 'copied': 320, 'failed': 0}]
    """

    def __init__(self, host='localhost', port=DEFAULT_PORT, timeout=10.0):
        self.host = host
        self.port = int(port)
        self.timeout = timeout

    def queryStatus(self, nusers=-1):
        """Rows of the last ``nusers`` shifts (-1: all), newest first, one per shift and storage.

        Each row is a dict with the keys ``usertime`` (shift start, microseconds since the epoch), ``uid``,
        ``gid``, ``storage``, ``pending``, ``copied``, ``failed``.
        """
        nusers = int(nusers)
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.sendall(('QUERY %d\n' % nusers).encode('ascii'))
            reader = sock.makefile('r', encoding='utf-8', newline='\n')
            try:
                line = reader.readline(MAX_LINE)
            except ValueError:  # not UTF-8: not grimseld
                raise StatusError('%s:%d answered something that is not UTF-8: not grimseld\'s status service?' % (self.host, self.port))
            finally:
                reader.close()
        finally:
            sock.close()
        if not line.endswith('\n'):
            if len(line) >= MAX_LINE:
                raise StatusError('%s:%d answered a line of over %d bytes: not grimseld\'s status service?' % (self.host, self.port, MAX_LINE))
            raise StatusError('grimseld at %s:%d closed the connection without an answer' % (self.host, self.port))
        return _rows(line, self.host, self.port)


def _rows(line, host, port):
    """The rows of one answer line; StatusError for an error answer or anything that is not a status."""
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get('error'), str):
        raise StatusError(answer['error'])
    if not isinstance(answer, list) or not all(isinstance(row, dict) and all(k in row for k in KEYS) for row in answer):
        raise StatusError('%s:%d answered %r, not a status: not grimseld\'s status service?' % (host, port, line.strip()[:200]))
    return [dict((k, row[k]) for k in KEYS) for row in answer]
