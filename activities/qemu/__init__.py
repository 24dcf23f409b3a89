"""Proving a VM disk image boots, with QEMU alone (no LXD): see boot.py."""
