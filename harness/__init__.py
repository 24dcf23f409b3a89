"""The real parts the tests and the benchmarks both drive: the image server in a thread or a
process, a Temporal dev server, the one `publish` factory, `until`/`wait_until`, process
helpers, the `lxc` client and a check run on a version in testing. Nothing here is a stand-in
and nothing imports pytest: pytest's fixtures, skips and failures stay in tests/."""
