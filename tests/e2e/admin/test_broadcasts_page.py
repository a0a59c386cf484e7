"""The broadcasts page: preview, Telegram's HTML rules, one broadcast per form, pause/cancel."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from core.db.tables import broadcasts

from .conftest import login, nonce, post_form


async def test_preview_checks_the_html_and_counts_the_audience(client, staff, shop) -> None:
    await shop.user(501)
    await shop.user(502)
    await login(client, "admin")
    r = await post_form(
        client,
        "/broadcasts",
        {
            "nonce": nonce(),
            "text": '<b>Hello</b> &amp; <a href="javascript:alert(1)">see</a>',
            "audience": "everyone",
            "action": "preview",
        },
    )
    assert r.status_code == 200
    preview = r.text.split('id="preview">')[1].split("</div>")[0]
    assert preview.startswith("<b>Hello</b> &amp; ") and "javascript" not in preview
    assert "It would go to <strong>2 users</strong>" in r.text
    bad = await post_form(
        client,
        "/broadcasts",
        {"nonce": nonce(), "text": "<b>unclosed", "audience": "everyone", "action": "send"},
    )
    assert bad.status_code == 400
    assert "Telegram would refuse this message" in bad.text and "&lt;b&gt;unclosed</textarea>" in bad.text
    async with shop.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(broadcasts)) == 0


async def test_a_resubmitted_form_starts_one_broadcast_and_pause_cancel(client, staff, shop) -> None:
    await shop.user(601)
    await login(client, "admin")
    form = {"nonce": nonce(), "text": "Maintenance tonight", "audience": "everyone", "action": "send"}
    first = await post_form(client, "/broadcasts", form)
    again = await post_form(client, "/broadcasts", form)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    path = first.headers["location"]
    page = await client.get(path)
    assert "already sent" in page.text  # the second submit's notice
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', page.text)
    async with shop.db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(broadcasts)) == 1
    r = await post_form(client, f"{path}/pause", {})
    assert r.status_code == 303
    assert "Paused" in (await client.get(path)).text
    assert (await post_form(client, f"{path}/pause", {})).status_code == 409
    assert (await post_form(client, f"{path}/cancel", {})).status_code == 303
    page = (await client.get(path)).text
    assert "Cancelled" in page and "http-equiv" not in page


async def test_only_admins_broadcast(client, staff) -> None:
    await login(client, "support")
    assert (await client.get("/broadcasts")).status_code == 403
    r = await post_form(
        client, "/broadcasts", {"nonce": nonce(), "text": "x", "audience": "everyone", "action": "send"}
    )
    assert r.status_code == 403
