"""The Python clients and their examples against a running grimseld (G11).

Run by test/integration/python-client.test.ts, which starts grimseld and passes, in the environment:
PPU_GRIMSEL_HOST, PPU_STATUS_PORT, PPU_MESSAGE_PORT, PPU_EXPECTED_INTERNAL (JSON: the D-Bus QueryStatus rows
of the internal storage, as dicts), PPU_FIFO (grimseld's FIFO), PPU_ADD_DIR (where tests create files to add) and
PPU_BREAKABLE (the directory holding the target of grimseld's storage 'flaky'; a test replaces it by a regular
file so that copies to 'flaky' fail from then on).
"""
import io
import json
import os
import socket
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(HERE, '..', 'examples'))

from ppu.grimsel import DAbstractMessageClient, DQueryStatusClient  # noqa: E402
import grimsel_live  # noqa: E402
import grimsel_messages  # noqa: E402
import grimsel_status  # noqa: E402

ENV = os.environ
HOST = ENV.get('PPU_GRIMSEL_HOST', '')
STATUS_PORT = int(ENV.get('PPU_STATUS_PORT', '0'))
MESSAGE_PORT = int(ENV.get('PPU_MESSAGE_PORT', '0'))
needs_grimseld = unittest.skipUnless(HOST and STATUS_PORT and MESSAGE_PORT, 'needs a running grimseld (PPU_* variables)')


def break_flaky_storage():
    """From now on every copy to the storage 'flaky' fails (ENOTDIR): a COPY_ERROR on demand."""
    where = ENV['PPU_BREAKABLE']
    if os.path.isdir(where):
        os.rename(where, where + '.away')
        with open(where, 'w') as f:
            f.write('a file where a directory should be\n')


def add_file(name):
    """Creates a file and hands it to grimseld through its FIFO (G8); returns its path."""
    path = os.path.join(ENV['PPU_ADD_DIR'], 'py', name)
    if not os.path.isdir(os.path.dirname(path)):
        os.makedirs(os.path.dirname(path))
    with open(path, 'wb') as f:
        f.write(b'x' * 1000)
    with open(ENV['PPU_FIFO'], 'w') as fifo:
        fifo.write(os.path.join(ENV['PPU_ADD_DIR'], '.', 'py', name) + '\n')
    return path


class Recorder(grimsel_messages.MessagePrinter):
    """The example's client with callbacks that also record what they were called with."""

    def __init__(self, timeout=0):
        grimsel_messages.MessagePrinter.__init__(self, HOST, MESSAGE_PORT, timeout, out=io.StringIO())
        self.connected = threading.Event()
        self.copy_errors = []
        self.got = threading.Condition()

    def onConnect(self):
        grimsel_messages.MessagePrinter.onConnect(self)
        self.connected.set()

    def onCopyError(self, errcode, src_dest, text):
        grimsel_messages.MessagePrinter.onCopyError(self, errcode, src_dest, text)
        with self.got:
            self.copy_errors.append((errcode, src_dest, text))
            self.got.notify_all()

    def wait_copy_error(self, needle, timeout=90):
        end = time.time() + timeout
        with self.got:
            while not any(needle in m[1] for m in self.copy_errors):
                left = end - time.time()
                if left <= 0:
                    raise AssertionError('no COPY_ERROR about %s within %d s; got %r' % (needle, timeout, self.copy_errors))
                self.got.wait(left)
        return [m for m in self.copy_errors if needle in m[1]][0]


@needs_grimseld
class QueryStatusTest(unittest.TestCase):
    def setUp(self):
        self.client = DQueryStatusClient.DQueryStatusClient(HOST, STATUS_PORT)

    def test_rows_are_dicts_with_the_classic_keys_matching_dbus(self):
        rows = self.client.queryStatus(-1)
        for row in rows:
            self.assertEqual(sorted(row.keys()), sorted(['usertime', 'uid', 'gid', 'storage', 'pending', 'copied', 'failed']))
        internal = [r for r in rows if r['storage'] == 'internal']
        expected = json.loads(ENV['PPU_EXPECTED_INTERNAL'])
        # Older shifts are settled; the newest may have grown since (the message tests add files to it).
        self.assertEqual(internal[1:], expected[1:])
        self.assertEqual([internal[0][k] for k in ('usertime', 'uid', 'gid')], [expected[0][k] for k in ('usertime', 'uid', 'gid')])
        self.assertGreaterEqual(internal[0]['copied'], expected[0]['copied'])
        self.assertIn('flaky', [r['storage'] for r in rows])

    def test_nusers_limits_to_the_newest_shifts(self):
        everything = self.client.queryStatus(-1)
        newest = max(r['usertime'] for r in everything)
        one = self.client.queryStatus(1)
        self.assertEqual(sorted(r['storage'] for r in one), ['flaky', 'internal'])
        self.assertEqual(set(r['usertime'] for r in one), set([newest]))
        self.assertGreater(len(everything), len(one), 'the test starts two shifts')

    def test_status_table_example_prints_a_line_per_shift_and_storage(self):
        rows = self.client.queryStatus(-1)
        lines = grimsel_status.format_table(rows).splitlines()
        self.assertRegex(lines[0], r'^User Time\s+\| UID\s*\| GID\s*\| Storage\s+\| Pending \| Copied \| Failed$')
        self.assertEqual(len(lines), 2 + len(rows))
        internal = [r for r in rows if r['storage'] == 'internal'][0]
        self.assertRegex(lines[2 + rows.index(internal)], r'\| %d\s*\| %d\s*\| internal\s+\|\s+\d+ \|\s+%d \|' % (internal['uid'], internal['gid'], internal['copied']))

    def test_status_example_exits_nonzero_with_a_plain_error_when_nothing_listens(self):
        err = io.StringIO()
        old, sys.stderr = sys.stderr, err
        try:
            self.assertEqual(grimsel_status.main([HOST, '--port', str(closed_port())]), 1)
        finally:
            sys.stderr = old
        self.assertIn('refused', err.getvalue())

    def test_live_view_renders_the_table_with_progress_bars(self):
        rows = self.client.queryStatus(-1)
        lines = grimsel_live.render(rows, HOST, STATUS_PORT)
        self.assertIn('grimseld %s:%d' % (HOST, STATUS_PORT), lines[0])
        internal = [r for r in rows if r['storage'] == 'internal'][-1]
        # The oldest shift's internal copies are all done: a full bar.
        self.assertEqual(len(lines), 4 + len(rows))
        self.assertTrue(lines[4 + rows.index(internal)].endswith('[' + '#' * 20 + ']'))
        self.assertEqual(grimsel_live.bar({'pending': 3, 'copied': 1, 'failed': 0}, 8), '[##......]')

    def test_bad_nusers_is_refused_by_grimseld(self):
        with self.assertRaises(DQueryStatusClient.StatusError) as e:
            self.client.queryStatus(-7)
        self.assertIn('number of shifts', str(e.exception))


def closed_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


@needs_grimseld
class MessageClientTest(unittest.TestCase):
    def test_the_six_codes(self):
        self.assertEqual(DAbstractMessageClient.ERROR_CODES, (
            DAbstractMessageClient.FILLSTATE_LIMIT, DAbstractMessageClient.ALMOST_OVERFLOW,
            DAbstractMessageClient.DISK_OVERFLOW, DAbstractMessageClient.COPY_ERROR,
            DAbstractMessageClient.LINK_ERROR, DAbstractMessageClient.DEL_ERROR))
        self.assertEqual(DAbstractMessageClient.COPY_ERROR, 'COPY_ERROR')

    def test_subclass_must_implement_processMessage(self):
        with self.assertRaises(NotImplementedError):
            DAbstractMessageClient.DAbstractMessageClient(HOST, MESSAGE_PORT).processMessage('COPY_ERROR', 'a:b', 'c')

    def test_two_clients_get_a_copy_error_through_their_callback(self):
        clients = [Recorder(), Recorder()]
        threads = [threading.Thread(target=c.connect) for c in clients]
        for t in threads:
            t.daemon = True
            t.start()
        try:
            for c in clients:
                self.assertTrue(c.connected.wait(30), 'subscribed')
            break_flaky_storage()
            added = add_file('copy-error-%d.cbf' % os.getpid())
            for c in clients:
                errcode, src_dest, text = c.wait_copy_error(os.path.basename(added))
                self.assertEqual(errcode, 'COPY_ERROR')
                src, _, dest = src_dest.partition(':')
                self.assertTrue(src.endswith('/py/' + os.path.basename(added)), src)
                self.assertIn('storage flaky', text)
                self.assertIn('COPY_ERROR %s -> %s' % (src, dest), c.out.getvalue())
        finally:
            for c in clients:
                c.stop()
            for t in threads:
                t.join(10)
        for t in threads:
            self.assertFalse(t.is_alive(), 'stop() ends connect()')

    def test_without_timeout_a_refused_connection_raises(self):
        client = Recorder()
        client.port = closed_port()
        with self.assertRaises(OSError):
            client.connect()

    def test_with_timeout_it_keeps_trying_until_stopped(self):
        client = Recorder(timeout=0.2)
        client.port = closed_port()
        reasons = []
        client.onDisconnect = reasons.append
        t = threading.Thread(target=client.connect)
        t.daemon = True
        t.start()
        deadline = time.time() + 30
        while len(reasons) < 3 and time.time() < deadline:
            time.sleep(0.05)
        client.stop()
        t.join(10)
        self.assertGreaterEqual(len(reasons), 3, 'retried after each timeout')
        self.assertFalse(t.is_alive())



class FakeMessagePort(object):
    """A one-connection stand-in for grimseld's message port: sends the greeting and then `lines`."""

    def __init__(self, lines):
        self.server = socket.socket()
        self.server.bind(('127.0.0.1', 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.lines = lines
        self.thread = threading.Thread(target=self._serve)
        self.thread.daemon = True
        self.thread.start()

    def _serve(self):
        conn, _ = self.server.accept()
        conn.sendall(b'{"hello": "grimseld messages", "version": 1}\n')
        for line in self.lines:
            conn.sendall((json.dumps(line) + '\n').encode('utf-8'))
        conn.close()
        self.server.close()


class MessageClientRobustnessTest(unittest.TestCase):
    def test_an_exception_in_processMessage_is_logged_and_the_next_message_still_comes(self):
        port = FakeMessagePort([
            {'errcode': 'COPY_ERROR', 'shortMessage': 'a:b', 'longMessage': 'first'},
            {'errcode': 'DEL_ERROR', 'shortMessage': '/ramdisk/x', 'longMessage': 'second'},
        ])
        got = []
        keepalive = []

        class Buggy(DAbstractMessageClient.DAbstractMessageClient):
            def onConnect(self):
                keepalive.append([self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)] +
                                 [self._sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, n)) for n in ('TCP_KEEPIDLE', 'TCP_KEEPINTVL', 'TCP_KEEPCNT')])

            def processMessage(self, errcode, shortMessage, longMessage):
                got.append(longMessage)
                if longMessage == 'first':
                    raise KeyError('a bug in the subscriber')

        disconnects = []
        client = Buggy('127.0.0.1', port.port)
        client.onDisconnect = disconnects.append
        with self.assertLogs('ppu.grimsel', level='ERROR') as logged:
            client.connect()  # timeout 0: returns when the fake port closes
        self.assertEqual(got, ['first', 'second'], 'the message after the failing one is delivered')
        self.assertEqual(disconnects, ['grimseld closed the connection'], 'the bug did not end the connection')
        self.assertIn('processMessage failed for COPY_ERROR a:b', logged.output[0])
        self.assertIn('KeyError', logged.output[0])
        self.assertEqual(keepalive, [[1, 30, 10, 3]], 'a vanished peer is noticed within about a minute')

    def test_a_line_that_is_no_message_object_fails_the_connection_and_the_reconnect_loop_goes_on(self):
        # Another service on the port, or a broken proxy: JSON that is no object (5, null, a string) or no JSON.
        for bad in ('5', 'null', '"errcode"', '"hello there"', 'not json at all'):
            server = socket.socket()
            server.bind(('127.0.0.1', 0))
            server.listen(5)
            port = server.getsockname()[1]

            def serve(line=bad):
                for _ in range(2):
                    conn, _ = server.accept()
                    conn.sendall((line + '\n').encode('utf-8'))
                    time.sleep(0.1)
                    conn.close()
            t = threading.Thread(target=serve)
            t.daemon = True
            t.start()
            connected = []
            reasons = []

            class Client(DAbstractMessageClient.DAbstractMessageClient):
                def processMessage(self, errcode, shortMessage, longMessage):
                    pass

                def onConnect(self):
                    connected.append(True)

            client = Client('127.0.0.1', port, timeout=0.05)

            def on_disconnect(reason):
                reasons.append(reason)
                if len(reasons) == 2:
                    client.stop()
            client.onDisconnect = on_disconnect
            client.connect()  # returns only through stop(): the loop survived both bad lines
            server.close()
            self.assertEqual(connected, [], '%s is no greeting' % bad)
            self.assertEqual(len(reasons), 2, bad)
            self.assertTrue(all('not grimseld' in r for r in reasons), reasons)

    def test_query_status_names_an_answer_that_is_no_status(self):
        for bad in (b'5\n', b'null\n', b'{"x": 1}\n', b'[1, 2]\n', b'[{"uid": 1}]\n', b'not json\n', b'\xff\xfe\n'):
            server = socket.socket()
            server.bind(('127.0.0.1', 0))
            server.listen(1)

            def serve(answer=bad):
                conn, _ = server.accept()
                conn.recv(100)
                conn.sendall(answer)
                conn.close()
            t = threading.Thread(target=serve)
            t.daemon = True
            t.start()
            with self.assertRaises(DQueryStatusClient.StatusError) as raised:
                DQueryStatusClient.DQueryStatusClient('127.0.0.1', server.getsockname()[1]).queryStatus(1)
            server.close()
            self.assertIn('not grimseld', str(raised.exception), bad)

    def test_query_status_gives_up_on_an_answer_that_never_ends_its_line(self):
        # A service that streams without a newline (found by a tester: the caller's memory grew by 500 MB in 8 s).
        server = socket.socket()
        server.bind(('127.0.0.1', 0))
        server.listen(1)

        def serve():
            conn, _ = server.accept()
            try:
                while True:
                    conn.sendall(b'x' * 65536)
            except OSError:
                pass
            finally:
                conn.close()
        t = threading.Thread(target=serve)
        t.daemon = True
        t.start()
        limit = DQueryStatusClient.MAX_LINE
        DQueryStatusClient.MAX_LINE = 1 << 20
        try:
            with self.assertRaises(DQueryStatusClient.StatusError) as raised:
                DQueryStatusClient.DQueryStatusClient('127.0.0.1', server.getsockname()[1], 5).queryStatus(1)
        finally:
            DQueryStatusClient.MAX_LINE = limit
            server.close()
        self.assertIn('a line of over', str(raised.exception))

    def test_a_service_that_says_nothing_fails_the_connection_after_the_greeting_timeout(self):
        # The status port given by mistake, or a stopped grimseld: no greeting ever comes (found by a tester).
        server = socket.socket()
        server.bind(('127.0.0.1', 0))
        server.listen(5)
        held = []

        def serve():
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                held.append(conn)
        t = threading.Thread(target=serve)
        t.daemon = True
        t.start()
        reasons = []

        class Client(DAbstractMessageClient.DAbstractMessageClient):
            def processMessage(self, errcode, shortMessage, longMessage):
                pass

        client = Client('127.0.0.1', server.getsockname()[1], timeout=0.05)

        def on_disconnect(reason):
            reasons.append(reason)
            client.stop()
        client.onDisconnect = on_disconnect
        timeout = DAbstractMessageClient.GREETING_TIMEOUT
        DAbstractMessageClient.GREETING_TIMEOUT = 0.5
        try:
            client.connect()  # returns through stop(), once the silent connection failed
        finally:
            DAbstractMessageClient.GREETING_TIMEOUT = timeout
            server.close()
            for conn in held:
                conn.close()
        self.assertEqual(len(reasons), 1, reasons)
        self.assertIn('said nothing within', reasons[0])


if __name__ == '__main__':
    unittest.main()
