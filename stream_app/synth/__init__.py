"""Synthetic claim streams: seeded, realistic radiation-therapy claim lines
(and claim messages) for the tests and benchmarks, and for the
`stream-app generate` command.

Modules: catalog (codes, payers, kinds of course), calendar (treatment days),
course (one course, billed), submission (when what it bills is received),
violations and edits (what changes a course),
stream (`Synth`, `generate`, `generate_lines`, `write_lines`), claims (lines
as claim messages), generate (the command's options and run).

Imports: the generator modules import each other and stream_app.core only,
never stream_app.stream, stream_app.intake, stream_app.sink, stream_app.cli
or stream_app.replay. generate.py is the command layer: it imports the generator
modules (and stream_app.argtypes), and none of them imports it.
"""
