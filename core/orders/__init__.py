"""Order services: buy, deliver codes, cancel, expire, fail, recover, refund.

The promise these services keep: a user never pays for a number that gave no code, never
pays twice, and the shop never gives back money it did not hold. How:

* Every state change is ``order_states.transition`` applied as compare-and-set on
  ``orders.status``, in one transaction with its ledger effect (capture, void or refund),
  its ``order_events`` row and its outbox notification (``transitions``). Whoever loses a
  race changes nothing.
* A purchase runs in three phases with no transaction open across the provider call
  (``purchase``); a crash leaves a ``reserving`` order that ``recovery`` resolves.
* Cancel and expiry look for a code one last time before voiding the hold (``closing``).
* Upstream bookkeeping (cancel or finish at the provider) is tracked apart from what the
  user sees and runs after the answer, retried by a job (``upstream``), so a provider that is
  slow or down never delays a refund.

One module per job; ``OrderService`` (``service``) is the front callers use.
"""

from core.orders.service import OrderService
from core.orders.view import CancelResult, OrderDetail, OrderView

__all__ = ["CancelResult", "OrderDetail", "OrderService", "OrderView"]
