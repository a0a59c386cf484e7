"""What runs around every handler: delivery dedupe, callback answers, errors, limits, users.

One module per job: ``dedupe`` (the update log), ``replies`` (callback answers and error
sentences), ``rate_limit`` and ``users`` (the resolver over ``bot.users.UserDirectory``).

Order (outermost first), set up in ``bot.app.build_app``:

* ``UpdateDedupe`` (every update): drops an update whose id is in ``processed_updates`` and
  records the id once the update has been handled, so a redelivery of a finished update (a
  webhook retry, a crash before the polling offset moved on) is dropped while one a killed
  worker never finished is handled again (its effects are idempotent on their own keys). A
  ``successful_payment`` is always handled: crediting is idempotent on the charge id.
* ``CallbackAnswerer`` (callback queries): every query is answered exactly once — with what
  the handler put in ``reply``, with the sentence for the error it raised, or with "working
  on it" when the handler is still busy after ``deadline`` seconds (Telegram shows a spinner
  until a query is answered). In webhook mode a timely answer rides on the webhook's reply.
* ``MessageErrors`` (messages): an exception becomes a sentence in the chat, never silence
  or a traceback.
* ``RateLimit`` (messages and callback queries, never payments): a simple per-user token
  bucket; over the limit the update is refused with a sentence and changes nothing.
* ``UserResolver`` (messages, callback queries, pre-checkout queries): the shop user for the
  Telegram user, created on first sight; handlers receive ``user_id``.
"""

from bot.middlewares.dedupe import UpdateDedupe, UpdateLog
from bot.middlewares.rate_limit import RateLimit, TokenBucket
from bot.middlewares.replies import CallbackAnswerer, MessageErrors, Reply
from bot.middlewares.users import UserResolver
from bot.users import UserDirectory

__all__ = [
    "CallbackAnswerer",
    "MessageErrors",
    "RateLimit",
    "Reply",
    "TokenBucket",
    "UpdateDedupe",
    "UpdateLog",
    "UserDirectory",
    "UserResolver",
]
