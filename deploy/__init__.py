"""Everything that starts Icefloe: host set-up, the one-machine stack, CI examples."""
