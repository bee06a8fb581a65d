"""grimseld's messages over TCP (G10): subclass DAbstractMessageClient and implement processMessage().

Protocol: after connecting, grimseld sends one JSON object per line: first a greeting
``{"hello": "grimseld messages", "version": 1}``, then one ``{"errcode", "shortMessage", "longMessage",
"time"}`` object per message. The client sends nothing. A client that does not read is disconnected.
A connection grimseld refuses (a limit reached: 8 per local user or remote address, 64 in all) gets one
``{"error": "refused: ..."}`` line instead of the greeting, then is closed: connect() raises SubscriptionRefused
with that reason (timeout 0), or passes it to onDisconnect() and tries again after ``timeout`` seconds.

A connection whose peer vanished without closing it (the PPU powered off, a cable pulled) is noticed by TCP
keepalive within about a minute (probes after 30 s of silence, every 10 s, 3 unanswered), then reconnected
as after any other loss; without those settings Linux would wait over two hours. An exception raised by
processMessage() is logged (logger ``ppu.grimsel``) and the next message is delivered: a subscriber's bug
with one message neither loses the connection nor the messages after it.
"""
import json
import logging
import socket
import threading

LOG = logging.getLogger('ppu.grimsel')

#: TCP keepalive: seconds of silence before the first probe, seconds between probes, probes unanswered.
KEEPALIVE = (30, 10, 3)

DEFAULT_PORT = 47198

# The longest message line read, and how long grimseld's greeting may take: a service on the port that streams
# without a newline, or says nothing (the status port by mistake, a stopped grimseld), is a failed connection.
MAX_LINE = 16 * 1024 * 1024
GREETING_TIMEOUT = 10.0

#: The ramdisk (short message: its mount point) passed fillstate_limit; old copied files are reclaimed.
FILLSTATE_LIMIT = 'FILLSTATE_LIMIT'
#: A mount point is nearly full (short message: the mount point).
ALMOST_OVERFLOW = 'ALMOST_OVERFLOW'
#: A mount point is full (short message: the mount point).
DISK_OVERFLOW = 'DISK_OVERFLOW'
#: A copy failed (short message: ``src:dest``).
COPY_ERROR = 'COPY_ERROR'
#: A ramdisk file could not be replaced by a link (short message: the file).
LINK_ERROR = 'LINK_ERROR'
#: A file could not be deleted (short message: the file).
DEL_ERROR = 'DEL_ERROR'

ERROR_CODES = (FILLSTATE_LIMIT, ALMOST_OVERFLOW, DISK_OVERFLOW, COPY_ERROR, LINK_ERROR, DEL_ERROR)


class SubscriptionRefused(ConnectionError):
    """grimseld refused the subscription; the message says why (e.g. too many connections from this user)."""


class DAbstractMessageClient(object):
    """Receives grimseld's messages; subclasses implement processMessage().

    ``timeout``: seconds to wait before reconnecting when the connection fails or ends; 0 means do not
    reconnect (connect() then returns when the connection ends, or raises if it cannot be made).
    """

    def __init__(self, host='localhost', port=DEFAULT_PORT, timeout=0):
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self._stopped = threading.Event()
        self._sock = None

    def processMessage(self, errcode, shortMessage, longMessage):
        """Called once per message; ``errcode`` is one of ERROR_CODES."""
        raise NotImplementedError('subclasses of DAbstractMessageClient implement processMessage()')

    def onConnect(self):
        """Called each time grimseld confirms the subscription (messages from then on are received)."""

    def onDisconnect(self, reason):
        """Called when a connection fails or ends; ``reason`` says why."""

    def connect(self):
        """Receives messages until stop() is called, or, with timeout 0, until the connection ends."""
        while not self._stopped.is_set():
            try:
                self._receive()
                reason = 'grimseld closed the connection'
            except (OSError, ValueError) as e:
                if not self.timeout and not self._stopped.is_set():
                    raise
                reason = str(e)
            if self._stopped.is_set():
                return
            self.onDisconnect(reason)
            if not self.timeout:
                return
            self._stopped.wait(self.timeout)

    def stop(self):
        """Ends connect(), from another thread or from processMessage()."""
        self._stopped.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _deliver(self, errcode, shortMessage, longMessage):
        try:
            self.processMessage(errcode, shortMessage, longMessage)
        except NotImplementedError:
            raise
        except Exception:  # the subscriber's bug: said, and the next message still comes
            LOG.exception('processMessage failed for %s %s; the next message is delivered as usual', errcode, shortMessage)

    def _receive(self):
        sock = socket.create_connection((self.host, self.port), 10)
        sock.settimeout(GREETING_TIMEOUT)
        _keepalive(sock)
        self._sock = sock
        try:
            if self._stopped.is_set():
                return
            reader = sock.makefile('r', encoding='utf-8', newline='\n')
            try:
                while True:
                    try:
                        line = reader.readline(MAX_LINE)
                    except socket.timeout:
                        raise ValueError('%s:%d said nothing within %g s of the connection: not grimseld\'s message service, '
                                         'or grimseld does not answer' % (self.host, self.port, GREETING_TIMEOUT))
                    if not line.endswith('\n'):
                        if len(line) >= MAX_LINE:
                            raise ValueError('%s:%d sent a line of over %d bytes: not grimseld\'s message service?'
                                             % (self.host, self.port, MAX_LINE))
                        break
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        obj = None
                    if not isinstance(obj, dict):
                        # Not grimseld's protocol (another service on the port?): a failed connection, as any other.
                        raise ValueError('%s:%d sent %r, not a message object: not grimseld\'s message service?'
                                         % (self.host, self.port, line.strip()[:200]))
                    if 'errcode' in obj:
                        self._deliver(obj['errcode'], obj.get('shortMessage', ''), obj.get('longMessage', ''))
                    elif 'hello' in obj:
                        sock.settimeout(None)  # greeted: messages may be hours apart
                        self.onConnect()
                    elif 'error' in obj:
                        raise SubscriptionRefused('grimseld at %s:%d: %s' % (self.host, self.port, obj['error']))
            finally:
                reader.close()
        finally:
            self._sock = None
            sock.close()


def _keepalive(sock):
    """TCP keepalive with KEEPALIVE's timings where the platform has them (Linux), the system's elsewhere."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in zip(('TCP_KEEPIDLE', 'TCP_KEEPINTVL', 'TCP_KEEPCNT'), KEEPALIVE):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
