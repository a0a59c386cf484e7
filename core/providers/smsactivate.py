"""The old import path of the ``handlerapi`` adapter (SMS-Activate closed in December 2025)."""

from core.providers.handlerapi import HandlerApiProvider, SmsActivateProvider

__all__ = ["HandlerApiProvider", "SmsActivateProvider"]
