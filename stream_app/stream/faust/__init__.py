"""Everything that reaches into faust-streaming's internals, pinned to one
version: `patches` (the one place that checks the installed version and the
sha256 of every overridden function's source, and installs the overrides),
`drain` (the drain-loop override) and `metrics` (Faust's Prometheus monitor
with cached labels). A new Faust version fails `patches.check_faust()`
loudly, and tests/test_faust_patches.py with it."""
