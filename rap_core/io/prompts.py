"""Chat prompts for the two rollout conditions.

Multimodal: the question with each `<image>` placeholder as an image slot (or the images
first when the question has none). Text-only: the same prompt with the image slots REMOVED,
not replaced by a blank image. TEMPLATE_VERSION is part of the model key.
"""

from __future__ import annotations

IMAGE_PLACEHOLDER = "<image>"
TEMPLATE_VERSION = "chat-v1"


def count_placeholders(question: str) -> int:
    return question.count(IMAGE_PLACEHOLDER)


def build_messages(question: str, n_images: int, with_images: bool,
                   system_prompt: str | None = None) -> list[dict]:
    """Chat messages for one sample under one condition."""
    pieces = question.split(IMAGE_PLACEHOLDER)
    if not with_images:
        content = [{"type": "text", "text": " ".join(p.strip() for p in pieces if p.strip())}]
    elif len(pieces) == 1:
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": question}]
    else:
        content = [{"type": "text", "text": pieces[0]}] if pieces[0] else []
        for piece in pieces[1:]:
            content.append({"type": "image"})
            if piece:
                content.append({"type": "text", "text": piece})
    messages = [{"role": "user", "content": content}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages
