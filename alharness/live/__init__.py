"""Live campaigns: a strategy chosen by simulation, run with real annotators.

The campaign loop's steps (context, propose, check and charge, record,
train, evaluate, round rows) are the simulation's; the oracle's answers are
replaced by a task queue whose answers come from annotation tool exports
(Label Studio task JSON or COCO JSON). Everything lives in one directory,
append-only, and every command resumes where the last one stopped
(docs/live.md is the user's guide).

- ``campaign``: the run directory, its state and the commands' logic;
- ``tasks``: tasks, queries and answers as JSON, the pool's public facts;
- ``formats``: Label Studio and COCO, both ways (``label_studio``, ``coco``);
- ``encoding``: Label Studio brush RLE, COCO RLE and the answers' run lengths;
- ``images``: the pool, pre-labelled masks and the labelled test folder;
- ``shadow``: answers from ground truth, as an export file (shadow mode);
- ``times``: measured annotation times fitted into ``seconds`` prices (``alharness costs fit``);
- ``cli``: the ``alharness live`` subcommands and ``alharness costs fit``.
"""
