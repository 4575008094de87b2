"""Chat messages as the layouts carry them (OpenAI-style turns, ShareGPT `from`/`value`):
the text with <image> placeholders in place of image items, and the image references."""

from __future__ import annotations

from rap.rap_core.io.prompts import IMAGE_PLACEHOLDER
from rap.rap_core.io.pool_images import RowError


def chat_text(content, where: str) -> tuple[str, list]:
    """A chat turn's content as text with <image> placeholders, and its image references."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, (list, tuple)):
        raise RowError("bad_message", f"{where}: content is neither text nor a list of items")
    text, images = "", []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            part = item.get("text") or ""
            if not isinstance(part, str):
                raise RowError("bad_message", f"{where}: a text item is not a string "
                               f"({type(part).__name__})")
            text += part
        elif kind in ("image", "image_url"):
            ref = item.get("image") or item.get("image_url")
            images.append(ref.get("url") if isinstance(ref, dict) else ref)
            text += IMAGE_PLACEHOLDER
        else:
            raise RowError("bad_message", f"{where}: unsupported content item {item!r:.80}")
    return text, images


def from_chat(messages, where: str) -> tuple[str | None, str, list]:
    """(system, user text, images) of a chat list; several user turns are joined."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise RowError("bad_message", f"{where} is not a list of chat messages")
    system, user, images = None, [], []
    for turn in messages:
        if not isinstance(turn, dict):
            raise RowError("bad_message", f"{where}: a turn is not an object")
        role = turn.get("role") or turn.get("from")
        text, refs = chat_text(turn.get("content", turn.get("value")), where)
        if role == "system":
            system = text.strip() or None
        elif role in ("user", "human"):
            user.append(text)
            images += refs
    if not user:
        raise RowError("bad_message", f"{where} has no user turn")
    return system, "\n".join(user), images
