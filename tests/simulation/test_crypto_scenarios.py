"""Seeded shop histories with crypto top-ups mixed in, audited after each one.

The base scenario (``test_scenarios.Scenario``: buys, double taps, cancels, codes, crashes,
clock jumps, jobs) runs with two more actions: a crypto top-up whose invoice may fail to be
created, may never be paid, may expire, and whose webhook may be lost, delivered once, or
delivered several times (some at once, some racing the poller); and the crypto poll job. At
the end the poller runs and everything settles. Then, besides the base checks (every ledger
invariant, including invariant 6 on crypto top-ups; nothing open; each balance is funding
minus completed orders), each user's funding includes exactly the invoices Crypto Pay
reports paid, and each paid invoice told its buyer exactly once.

``NUMBERSHOP_SIM_SCENARIOS`` / ``NUMBERSHOP_SIM_SEED`` work as in test_scenarios (default
here: 200 on SQLite, 40 on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from core.config import load_settings
from core.cryptopay import CryptoPay
from core.cryptopay_wire import CryptoPayError, RemoteInvoice, webhook_signature
from core.db.tables import outbox
from tests.integration.orders_support import ScriptedProvider, Shop
from tests.simulation.test_scenarios import CHUNKS, Scenario, _check

TOKEN = "sim:crypto-token"


class InProcessCryptoPay:
    """Crypto Pay as far as the service sees it, in memory (the wire has its contract tests)."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.invoices: dict[int, dict[str, Any]] = {}
        self.fail_next = False
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        return None

    def _remote(self, i: dict[str, Any]) -> RemoteInvoice:
        if i["status"] == "active" and self.clock.now() >= i["expires"]:
            i["status"] = "expired"
        return RemoteInvoice(
            i["invoice_id"], i["status"], "fiat", "USD", None, Decimal(i["amount"]), i["payload"],
            f"https://t.me/CryptoBot?start={i['invoice_id']}", i.get("paid_asset"), i.get("paid_amount"),
            i["expires"],
        )  # fmt: skip

    async def create_invoice(
        self, *, fiat: str, amount: str, payload: str, expires_in: int, **_: Any
    ) -> RemoteInvoice:
        if self.fail_next:
            self.fail_next = False
            raise CryptoPayError("createInvoice: 500 INTERNAL")
        invoice_id = next(self._ids)
        self.invoices[invoice_id] = dict(
            invoice_id=invoice_id,
            status="active",
            amount=amount,
            payload=payload,
            expires=self.clock.now() + timedelta(seconds=expires_in),
        )
        return self._remote(self.invoices[invoice_id])

    async def get_invoices(self, invoice_ids: Iterable[int]) -> list[RemoteInvoice]:
        return [self._remote(self.invoices[i]) for i in invoice_ids if i in self.invoices]

    def pay(self, invoice_id: int) -> bool:
        invoice = self.invoices[invoice_id]
        if self._remote(invoice).status != "active":
            return False
        invoice.update(status="paid", paid_asset="USDT", paid_amount=invoice["amount"])
        return True

    def webhook(self, invoice_id: int) -> tuple[bytes, str]:
        i = self.invoices[invoice_id]
        body = {
            "update_id": 1,
            "update_type": "invoice_paid",
            "request_date": "2026-01-01T00:00:00Z",
            "payload": {
                "invoice_id": i["invoice_id"],
                "status": i["status"],
                "currency_type": "fiat",
                "fiat": "USD",
                "amount": i["amount"],
                "payload": i["payload"],
                "paid_asset": "USDT",
                "paid_amount": i["amount"],
            },
        }
        raw = json.dumps(body).encode()
        return raw, webhook_signature(raw, TOKEN)


class CryptoScenario(Scenario):
    ACTIONS = ["buy", "double_tap", "cancel", "code", "jump", "jobs", "cancel_crash", "crypto", "crypto_poll"]
    WEIGHTS = [5, 2, 3, 3, 2, 2, 1, 4, 2]

    def __init__(self, shop: Shop, seed: int, pay: CryptoPay, remote: InProcessCryptoPay) -> None:
        super().__init__(shop, seed)
        self.pay = pay
        self.remote = remote
        self.invoice_users: dict[int, Any] = {}

    async def run(self) -> None:
        rng, shop = self.rng, self.shop
        for i in range(rng.randint(1, 3)):
            funds = rng.choice([0, 50, 100])
            user = await shop.user(self.seed * 10 + i + 1, funds=funds)
            self.users.append(user)
            self.funding[user.id] = funds
        for step in range(rng.randint(4, 12)):
            action = rng.choices(self.ACTIONS, weights=self.WEIGHTS)[0]
            self.log.append(f"{step}:{action}")
            await getattr(self, action)()
        await self.settle()
        await self.pay.poll()  # the last lost webhooks are found
        for invoice_id, user in self.invoice_users.items():
            if self.remote.invoices[invoice_id]["status"] == "paid":
                self.funding[user.id] += int(Decimal(self.remote.invoices[invoice_id]["amount"]) * 100)

    async def crypto(self) -> None:
        rng = self.rng
        user = rng.choice(self.users)
        self.remote.fail_next = rng.random() < 0.1
        try:
            created = await self.pay.create_invoice(
                user.telegram_id, rng.choice([100, 250, 990]), description="x"
            )
        except Exception as exc:  # the buyer is told; nothing was charged
            self.log.append(f"create failed: {type(exc).__name__}")
            return
        self.invoice_users[created.invoice_id] = user
        if rng.random() < 0.2:
            self.log.append("never paid")
            return
        if not self.remote.pay(created.invoice_id):
            self.log.append("expired before payment")
            return
        body, signature = self.remote.webhook(created.invoice_id)
        fate = rng.choice(["lost", "once", "duplicated", "concurrent", "with_poll"])
        self.log.append(f"webhook {fate}")
        if fate == "once":
            await self.pay.handle_webhook(body, signature)
        elif fate == "duplicated":
            for _ in range(rng.randint(2, 4)):
                await self.pay.handle_webhook(body, signature)
        elif fate == "concurrent":
            await asyncio.gather(
                *(self.pay.handle_webhook(body, signature) for _ in range(rng.randint(2, 5)))
            )
        elif fate == "with_poll":
            await asyncio.gather(self.pay.handle_webhook(body, signature), self.pay.poll())

    async def crypto_poll(self) -> None:
        await self.pay.poll()


def _seeds(dialect: str, chunk: int) -> list[int]:
    if os.environ.get("NUMBERSHOP_SIM_SEED"):
        return [int(os.environ["NUMBERSHOP_SIM_SEED"])] if chunk == 0 else []
    total = int(os.environ.get("NUMBERSHOP_SIM_SCENARIOS", 200 if dialect == "sqlite" else 40))
    per_chunk = -(-total // CHUNKS)
    return list(range(chunk * per_chunk, min(total, (chunk + 1) * per_chunk)))


@pytest.mark.parametrize("chunk", range(CHUNKS))
async def test_random_histories_with_crypto_top_ups_keep_every_promise(db, clock, chunk):
    seeds = _seeds(db.dialect, chunk)
    if not seeds:
        pytest.skip("this chunk has no seeds (a single seed is being replayed)")
    shop = Shop(
        db,
        clock,
        {
            "alpha": ScriptedProvider("alpha", clock, cost=40),
            "beta": ScriptedProvider("beta", clock, cost=55, idempotent=True, batch=False),
        },
    )
    await shop.setup_catalogue(stock=1_000_000)

    async def orders_violations():
        from core.invariants import check_invariants

        return await check_invariants(db, clock.now())

    shop.orders_violations = orders_violations  # type: ignore[attr-defined]
    remote = InProcessCryptoPay(clock)
    pay = CryptoPay(db, clock, load_settings(CRYPTOPAY_TOKEN=TOKEN), client=remote)  # type: ignore[arg-type]
    for seed in seeds:
        scenario = CryptoScenario(shop, seed + 100_000, pay, remote)
        await scenario.run()
        await _check(shop, scenario)
        paid = [i for i in scenario.invoice_users if remote.invoices[i]["status"] == "paid"]
        async with db.read() as conn:
            told = await conn.scalar(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.dedupe_key.in_([f"cryptopay:{i}" for i in scenario.invoice_users]))
            )
        assert told == len(paid), (
            f"seed {seed}: {told} messages for {len(paid)} paid invoices; {scenario.log}"
        )
