"""Search, favourites and popular countries through the emulator, as a buyer uses them."""

from __future__ import annotations

from core.db.tables import favourites
from tests.e2e.bot.conftest import Harness
from tests.e2e.bot.test_journeys import price_in

ALICE, BOB = 9101, 9102


async def test_an_alias_opens_the_service_and_a_typo_shows_a_list(shop: Harness) -> None:
    chat = await shop.say(ALICE, "tg")
    assert "Telegram: choose a country" in chat.last().text  # not ChatGPT
    await shop.say(ALICE, "/start")
    chat = await shop.say(ALICE, "телеграм")
    assert "Telegram: choose a country" in chat.last().text
    await shop.say(ALICE, "/start")
    chat = await shop.say(ALICE, "telegarm")
    listing = chat.last()
    assert listing.text.startswith("Services matching “telegarm” (1)")
    assert listing.button_texts[0].startswith("Telegram · ")
    await shop.press(ALICE, "Telegram · ")
    assert "Telegram: choose a country" in shop.last_text(ALICE)


async def test_no_match_offers_the_closest_names_and_the_list(shop: Harness) -> None:
    chat = await shop.say(ALICE, "fcbk")
    reply = chat.last()
    assert reply.text.startswith("No service matches “fcbk”. Did you mean")
    assert reply.button_texts[0].startswith("Facebook")
    await shop.press(ALICE, "🛒 All services")
    assert "Choose a service" in shop.last_text(ALICE)


async def test_country_search_by_dialling_code_and_by_name(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    chat = await shop.say(ALICE, "whatsapp")
    assert "WhatsApp: choose a country" in chat.last().text
    chat = await shop.say(ALICE, "+49")  # a country list: typed text names a country
    confirm = chat.last()
    assert "Confirm your order" in confirm.text and "Germany" in confirm.text
    chat = await shop.say(ALICE, "germany")
    assert "Germany" in chat.last().text and "Confirm your order" in chat.last().text
    chat = await shop.say(ALICE, "+1")  # United States and Canada share it: choose
    choice = chat.last()
    assert "countries matching “+1”" in choice.text
    assert any("United States" in t for t in choice.button_texts)
    assert any("Canada" in t for t in choice.button_texts)
    chat = await shop.say(ALICE, "atlantis")
    assert chat.last().text.startswith("No country for <b>WhatsApp</b>") is False  # HTML is rendered
    assert chat.last().text.startswith("No country for WhatsApp matches “atlantis”")
    assert "🌍 All countries" in chat.last().button_texts
    chat = await shop.say(ALICE, "telegram")  # a service's exact name still opens it
    assert "Telegram: choose a country" in chat.last().text


async def test_a_saved_favourite_appears_on_the_service_list(shop: Harness) -> None:
    await shop.fund(ALICE, 1000, "seed")
    await shop.say(ALICE, "wa")
    chat = await shop.say(ALICE, "+49")
    confirm = chat.last()
    price = price_in(confirm.text)
    assert "☆ Save" in confirm.button_texts
    answer = await shop.press(ALICE, "☆ Save")
    assert answer.text is not None and answer.text.startswith("⭐ Saved")
    assert "⭐ Saved" in shop.tg.chat(ALICE).message(confirm.message_id).button_texts
    assert await shop.count(favourites) == 1
    await shop.press(ALICE, "⭐ Saved")  # and the same button forgets it
    assert await shop.count(favourites) == 0
    msg, save = shop.find(ALICE, "☆ Save")
    await shop.press(ALICE, data=save, message_id=msg.message_id)
    # The same ☆ Save again (a double tap the screen had not caught up with).
    await shop.press(ALICE, data=save, message_id=msg.message_id, forge=True)
    assert await shop.count(favourites) == 1  # saving twice keeps one

    chat = await shop.say(ALICE, "/buy")
    listing = chat.last()
    assert "favourites" in listing.text
    top = listing.button_texts[0]
    assert top == f"⭐ WhatsApp 🇩🇪 · ${price // 100}.{price % 100:02d}"
    await shop.press(ALICE, "⭐ WhatsApp")
    assert "Confirm your order" in shop.last_text(ALICE) and "Germany" in shop.last_text(ALICE)
    # Bob has saved nothing and sees no shortlist.
    chat = await shop.say(BOB, "/buy")
    assert not chat.last().button_texts[0].startswith("⭐")


async def test_popular_countries_come_first_then_the_chosen_order(shop: Harness) -> None:
    await shop.fund(ALICE, 2000, "seed")
    await shop.say(ALICE, "wa")
    await shop.say(ALICE, "+49")
    await shop.press(ALICE, "✅ Buy for")
    await shop.press(ALICE, "❌ Cancel & refund")
    shop.app.shop.catalogue_cache._entries.clear()  # the lists are cached for seconds
    chat = await shop.say(BOB, "whatsapp")
    listing = chat.last()
    assert "Most bought this week first" in listing.text
    assert listing.button_texts[0].startswith("🔥 🇩🇪 Germany")
    assert "📦 Most in stock first" in listing.button_texts
    await shop.press(BOB, "📦 Most in stock first")
    by_stock = shop.tg.chat(BOB).message(listing.message_id)
    assert "Sorted by stock" in by_stock.text and "💲 Cheapest first" in by_stock.button_texts
    stocks = [int(t.rsplit(" · ", 1)[1].split()[0].replace(",", "")) for t in by_stock.button_texts[1:6]]
    assert stocks == sorted(stocks, reverse=True)
    shop.clock.advance(8 * 24 * 3600)  # a week later Germany is no longer popular
    shop.app.shop.catalogue_cache._entries.clear()
    chat = await shop.say(BOB, "whatsapp")
    assert not chat.last().button_texts[0].startswith("🔥")
