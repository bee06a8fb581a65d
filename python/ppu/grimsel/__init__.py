"""Clients for grimseld's TCP status (port 47199) and message (port 47198) services.

The module layout mirrors the classic ``dectris.grimsel`` one, so scripts port by changing one import::

    from ppu.grimsel import DQueryStatusClient
    client = DQueryStatusClient.DQueryStatusClient('ppu-host', 47199)
"""
