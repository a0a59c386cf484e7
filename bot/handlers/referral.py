"""/referral: the buyer's personal invitation link, how many joined and what it earned."""

from __future__ import annotations

from aiogram.filters import Command
from aiogram.types import Message

from bot import keyboards, promo_texts
from bot.context import ShopContext
from bot.handlers import HandlerSet
from core import referrals

handlers = HandlerSet("referral")


@handlers.message(Command("referral"))
async def cmd_referral(message: Message, shop: ShopContext, user_id: int) -> None:
    settings = shop.core.settings
    if settings.REFERRAL_PERCENT <= 0 or settings.REFERRAL_DAYS <= 0:
        await message.answer(promo_texts.referral_off(), reply_markup=keyboards.back_to_menu())
        return
    stats = await referrals.stats(shop.core.db, user_id, shop.core.clock.now())
    assert message.bot is not None
    me = await message.bot.me()
    link = f"https://t.me/{me.username}?start=ref_{stats.code}"
    await message.answer(
        promo_texts.referral(
            link,
            stats.joined,
            stats.earned,
            stats.taken_back,
            settings.REFERRAL_PERCENT,
            settings.REFERRAL_DAYS,
            shop.currency,
        ),
        reply_markup=keyboards.back_to_menu(),
    )
