"""Clients for the PPU data movers (furkad, grimseld)."""
