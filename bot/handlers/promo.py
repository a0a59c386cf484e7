"""/promo CODE and the ``promo_<CODE>`` start link: redeem a promo code for wallet credit."""

from __future__ import annotations

from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from bot import keyboards, promo_texts
from bot.context import ShopContext
from bot.handlers import HandlerSet

handlers = HandlerSet("promo")


async def redeem(message: Message, shop: ShopContext, code: str) -> None:
    """Redeem and answer in one sentence; every refusal is a plain reason, never an error."""
    assert message.from_user is not None  # the user middleware drops updates without one
    result = await shop.core.promos.redeem(message.from_user.id, code)
    await message.answer(
        promo_texts.promo_result(result.outcome, result.code, result.amount, result.available, shop.currency),
        reply_markup=keyboards.buy_or_menu(),
    )


@handlers.message(Command("promo"))
async def cmd_promo(message: Message, shop: ShopContext, command: CommandObject) -> None:
    code = (command.args or "").strip()
    if not code:
        await message.answer(promo_texts.promo_usage(), reply_markup=keyboards.back_to_menu())
        return
    await redeem(message, shop, code)
