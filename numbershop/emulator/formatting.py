"""Message text as Telegram stores it: markup parsed away, entities kept, whitespace trimmed.

Bots send ``parse_mode="HTML"`` text; Telegram keeps the plain text plus entities and
refuses malformed markup with "can't parse entities". Parsing here (following the rules of
Telegram's own HTML parser) lets the chat view show what a user reads, lets "message is not
modified" compare what Telegram compares, and makes a bot that forgets to escape ``<`` in a
user-supplied name fail in tests as it would in production. Markdown modes are stored as
sent (not validated) — see the module's note in ``state``.
"""

from __future__ import annotations

from typing import Any

from numbershop.emulator.errors import BotApiError

MAX_TEXT_UTF16 = 4096

_TAGS = {
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "span",
    "pre",
    "code",
    "blockquote",
}
_SIMPLE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def render(
    text: str, parse_mode: str | None, entities: list[dict[str, Any]] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of a message, or the 400 Telegram would answer."""
    if entities:
        plain, ents = text, [dict(e) for e in entities]
    elif parse_mode and parse_mode.lower() == "html":
        plain, ents = parse_html(text)
    else:
        plain, ents = text, []
    return _trim(plain, ents)


def command_entities(text: str) -> list[dict[str, Any]]:
    """The ``bot_command`` entity Telegram attaches to a user's "/start …" message."""
    if not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": utf16_len(command)}]


def _cant_parse(src: str, what: str, pos: int | None = None) -> BotApiError:
    where = f" at byte offset {len(src[:pos].encode())}" if pos is not None else ""
    return BotApiError(400, f"Bad Request: can't parse entities: {what}{where}")


def _decode_entity(src: str, i: int) -> tuple[str | None, int]:
    end = src.find(";", i + 1, i + 12)
    if end < 0:
        return None, i
    name = src[i + 1 : end]
    if name in _NAMED:
        return _NAMED[name], end + 1
    if name.startswith("#") and len(name) > 1:
        try:
            code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
            return chr(code), end + 1
        except (ValueError, OverflowError):
            return None, i
    return None, i


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    u16 = 0
    stack: list[tuple[str, Any, int]] = []
    entities: list[dict[str, Any]] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c == "&":
            decoded, j = _decode_entity(src, i)
            if decoded is not None:
                out.append(decoded)
                u16 += utf16_len(decoded)
                i = j
                continue
        if c != "<":
            out.append(c)
            u16 += 2 if ord(c) > 0xFFFF else 1
            i += 1
            continue
        begin = i
        i += 1
        if i < n and src[i] == "/":
            if not stack:
                raise _cant_parse(src, "Unexpected end tag", begin)
            i += 1
            j = i
            while i < n and not src[i].isspace() and src[i] != ">":
                i += 1
            end_name = src[j:i].lower()
            while i < n and src[i].isspace():
                i += 1
            if i >= n or src[i] != ">":
                raise _cant_parse(src, "Unclosed end tag", begin)
            i += 1
            tag, open_arg, start = stack.pop()
            if end_name and end_name != tag:
                raise _cant_parse(
                    src,
                    f"Unmatched end tag at byte offset {len(src[:begin].encode())}, "
                    f'expected "</{tag}>", found "</{end_name}>"',
                )
            if u16 > start:
                _close(entities, tag, open_arg, start, u16 - start)
            continue
        j = i
        while i < n and not src[i].isspace() and src[i] != ">":
            i += 1
        if i >= n:
            raise _cant_parse(src, "Unclosed start tag", begin)
        name = src[j:i].lower()
        if name not in _TAGS:
            raise _cant_parse(src, f'Unsupported start tag "{name}"', begin)
        attrs, i = _attributes(src, i, name, begin)
        arg: Any = None
        if name == "a":
            arg = attrs.get("href")
        elif name == "span" and attrs.get("class") != "tg-spoiler":
            raise _cant_parse(src, 'Tag "span" must have class "tg-spoiler"', begin)
        elif name == "code" and attrs.get("class", "").startswith("language-"):
            arg = attrs["class"][len("language-") :]
        elif name == "tg-emoji":
            arg = attrs.get("emoji-id")
        elif name == "blockquote":
            arg = "expandable" in attrs
        stack.append((name, arg, u16))
    if stack:
        raise _cant_parse(src, f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _attributes(src: str, i: int, name: str, begin: int) -> tuple[dict[str, str], int]:
    attrs: dict[str, str] = {}
    n = len(src)
    while True:
        while i < n and src[i].isspace():
            i += 1
        if i >= n:
            raise _cant_parse(src, f'Unclosed start tag "{name}"', begin)
        if src[i] == ">":
            return attrs, i + 1
        j = i
        while i < n and not src[i].isspace() and src[i] not in "=>/\"'":
            i += 1
        attr = src[j:i].lower()
        if not attr:
            raise _cant_parse(src, f'Empty attribute name in the tag "{name}"', begin)
        while i < n and src[i].isspace():
            i += 1
        if i >= n:
            raise _cant_parse(src, f'Unclosed start tag "{name}"', begin)
        if src[i] != "=":
            attrs[attr] = ""
            continue
        i += 1
        while i < n and src[i].isspace():
            i += 1
        if i >= n:
            raise _cant_parse(src, f'Unclosed start tag "{name}"', begin)
        if src[i] in "\"'":
            quote = src[i]
            i += 1
            value: list[str] = []
            while i < n and src[i] != quote:
                if src[i] == "&":
                    decoded, k = _decode_entity(src, i)
                    if decoded is not None:
                        value.append(decoded)
                        i = k
                        continue
                value.append(src[i])
                i += 1
            if i >= n:
                raise _cant_parse(src, "Unclosed start tag", begin)
            i += 1
            attrs[attr] = "".join(value)
        else:
            j = i
            while i < n and (src[i].isascii() and (src[i].isalnum() or src[i] in ".-")):
                i += 1
            if i >= n:
                raise _cant_parse(src, "Unclosed start tag", begin)
            if not src[i].isspace() and src[i] != ">":
                raise _cant_parse(src, "Unexpected end of name token", i)
            attrs[attr] = src[j:i].lower()


def _close(entities: list[dict[str, Any]], tag: str, arg: Any, offset: int, length: int) -> None:
    if tag in _SIMPLE:
        entities.append({"type": _SIMPLE[tag], "offset": offset, "length": length})
    elif tag == "a":
        if arg:
            entities.append({"type": "text_link", "offset": offset, "length": length, "url": arg})
    elif tag == "tg-emoji":
        entities.append(
            {"type": "custom_emoji", "offset": offset, "length": length, "custom_emoji_id": str(arg or "")}
        )
    elif tag == "blockquote":
        kind = "expandable_blockquote" if arg else "blockquote"
        entities.append({"type": kind, "offset": offset, "length": length})
    elif tag in ("pre", "code"):
        last = entities[-1] if entities else None
        inner = (
            last is not None
            and last["offset"] == offset
            and last["length"] == length
            and last["type"] in ("pre", "code")
        )
        if inner and tag == "pre" and last is not None and last["type"] == "code":
            last["type"] = "pre"  # <pre><code class="language-x"> is one pre entity
        elif not inner:
            entity: dict[str, Any] = {"type": tag, "offset": offset, "length": length}
            if tag == "code" and arg:
                entity = {"type": "pre", "offset": offset, "length": length, "language": arg}
            entities.append(entity)


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = utf16_len(text[: len(text) - len(text.lstrip())])
    size = utf16_len(stripped)
    kept = []
    for e in entities:
        start = max(e["offset"], shift) - shift
        end = min(e["offset"] + e["length"] - shift, size)
        if end > start:
            kept.append({**e, "offset": start, "length": end - start})
    return stripped, kept
