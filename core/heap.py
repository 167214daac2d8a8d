"""Start-up objects kept out of Python's full garbage collections in long-running processes."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect once, then move every object alive now (modules, classes, the ORM's mappers, the
    app's routes, the adapters a worker warmed up) to the permanent generation, so that a full
    (generation 2) collection walks only what was created since.

    Call it when a process has finished starting. Measured in bench/pipeline.py before this:
    web and worker processes paused 60-170 ms in full collections that freed 10-70 objects
    each, every thread of the process stopped meanwhile; those pauses were the p99 of
    reply-to-delivered and of webhook acks.

    Once per process: the embedded mode's worker boot and the web app's start both call it,
    and a process that builds many apps (the test suite) keeps collecting what they leave."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.collect()
    gc.freeze()


_frozen = False
