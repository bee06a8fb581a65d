"""grimseld's status over TCP (G9): per shift and storage, pending, copied and failed files.

Protocol: send ``QUERY <n>\\n``; grimseld answers one JSON line, a list of rows (newest shift first) or
``{"error": "..."}``.
"""
import json
import socket

DEFAULT_PORT = 47199

#: The keys of every row queryStatus() returns.
KEYS = ('usertime', 'uid', 'gid', 'storage', 'pending', 'copied', 'failed')


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
                line = reader.readline()
            finally:
                reader.close()
        finally:
            sock.close()
        if not line.endswith('\n'):
            raise StatusError('grimseld at %s:%d closed the connection without an answer' % (self.host, self.port))
        answer = json.loads(line)
        if isinstance(answer, dict):
            raise StatusError(answer.get('error', 'unexpected answer: %s' % line.strip()))
        return [dict((k, row[k]) for k in KEYS) for row in answer]
