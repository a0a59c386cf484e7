"""What a long-running aiogram process does once, after start-up and before serving.

Both fixes remove stalls of the event loop that every update in flight would wait out:

* aiogram parses each Bot API answer with ``Response[<the method's return type>]``, a
  pydantic generic. pydantic caches parametrised generics in a *weak* dictionary, so once the
  garbage collector has taken the last one, the next call builds the class again: 5–10 ms of
  schema building on the loop, hundreds of times an hour (seen in a profile of
  ``python -m bench.bot``: ~600 rebuilds in a 30 s run, 82 with this, all at start-up).
  Holding one of each keeps the cache warm for the life of the process.
* Everything created at start-up (aiogram's and pydantic's models, SQLAlchemy's metadata:
  millions of objects) is moved out of the collector's sight; a full collection of them
  otherwise takes 150–200 ms every so often.

It imports nothing of the shop, so the benchmark's echo bot gets the same treatment.
"""

from __future__ import annotations

import gc
import inspect

_response_models: list[type] = []


def keep_response_models() -> None:
    """Build ``Response[T]`` for every return type of every Bot API method, and keep it."""
    if _response_models:
        return
    import aiogram.methods
    from aiogram.methods.base import Response, TelegramMethod

    returning = {
        cls.__returning__
        for cls in vars(aiogram.methods).values()
        if inspect.isclass(cls) and issubclass(cls, TelegramMethod) and cls is not TelegramMethod
    }
    _response_models.extend(Response[t] for t in returning)  # type: ignore[valid-type]


def freeze_startup_objects() -> None:
    """Call once, after start-up and before serving; it is process-wide, so composition
    roots call it."""
    keep_response_models()
    gc.collect()
    gc.freeze()
