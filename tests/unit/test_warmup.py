"""aiogram parses every Bot API answer with ``Response[T]``; after start-up each of those
must be a model already built and held, so no call builds one on the event loop."""

from __future__ import annotations

import inspect

import aiogram.methods
from aiogram.methods.base import Response, TelegramMethod

from bot import warmup


def test_every_methods_response_model_is_built_and_held() -> None:
    warmup.keep_response_models()
    held = {id(model) for model in warmup._response_models}
    methods = [
        c
        for c in vars(aiogram.methods).values()
        if inspect.isclass(c) and issubclass(c, TelegramMethod) and c is not TelegramMethod
    ]
    assert len(methods) > 100
    missing = [m.__name__ for m in methods if id(Response[m.__returning__]) not in held]
    assert missing == []
