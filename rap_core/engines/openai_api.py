"""Rollouts from an OpenAI-compatible chat-completions server (vLLM, SGLang, transformers serve).

Each sample is one request with `n = M` (or M requests with one seed each, when the server
answers fewer choices than asked for: transformers serve ignores `n`), images as base64 data
URLs, a per-request seed. Requests go out concurrently, up to `concurrency` at once; 429, 5xx,
timeouts and dropped connections are retried with exponential backoff, and a sample whose
requests keep failing becomes an `engine_unavailable` error (retried by the next run). No
server returns attention weights: the ACE pass runs on the local checkpoint (`local`).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import mimetypes
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import httpx

from rap.rap_core.engines.base import Engine, PromptItem, Response, SampleError
from rap.rap_core.engines.sampling import rollout_seed
from rap.rap_core.errors import EngineConfigError
from rap.rap_core.params import EngineConfig, RolloutSettings

log = logging.getLogger(__name__)

RETRIED_STATUS = {408, 409, 429, 500, 502, 503, 504}
SENT_AS_IS = {"image/png", "image/jpeg", "image/webp", "image/gif"}
# fields beyond the OpenAI API, sent until a server refuses them (then dropped for good):
# vLLM's sampled token ids, and transformers serve's generation config (it samples only when
# that says do_sample; other servers ignore the field)
OPTIONAL_FIELDS = ("return_token_ids", "generation_config")
RETRIES, BACKOFF_S = 4, 1.0  # attempts per request; first wait, doubled each retry


def served_models(url: str, timeout_s: float = 10.0,
                  client: httpx.Client | None = None) -> list[str]:
    """The model names the server lists under /models."""
    try:
        reply = (client or httpx).get(url.rstrip("/") + "/models", timeout=timeout_s)
        reply.raise_for_status()
        return [m["id"] for m in reply.json()["data"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise EngineConfigError(f"the engine server at {url} does not answer GET /models "
                                f"({type(exc).__name__}: {exc}); start it, or check "
                                "--engine-url") from exc


def served_model_name(url: str, asked: str | None, timeout_s: float = 10.0,
                      client: httpx.Client | None = None) -> str:
    """The served model to ask for: the one given (checked against the server's list), or
    the only one the server lists."""
    names = served_models(url, timeout_s, client)
    if asked is not None:
        if asked not in names:
            raise EngineConfigError(f"the server at {url} does not serve {asked!r} "
                                    f"(it serves: {', '.join(names) or 'nothing'})")
        return asked
    if len(names) != 1:
        raise EngineConfigError(f"the server at {url} serves {len(names)} models "
                                f"({', '.join(names)}): name one with --engine-model")
    return names[0]


def image_data_url(path: str) -> str:
    """A data URL of the image file: PNG/JPEG/WebP/GIF as they are, anything else as PNG."""
    mime = mimetypes.guess_type(path)[0] or ""
    with open(path, "rb") as f:
        data = f.read()
    if mime not in SENT_AS_IS:
        from PIL import Image
        buffer = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def chat_messages(item: PromptItem, with_images: bool, system_prompt: str | None) -> list[dict]:
    """The engine-independent prompt (rap_core.io.prompts) in chat-completions form: each
    image slot becomes the next image as a data URL; text-only drops the slots."""
    images = iter(item.image_paths)
    messages = item.messages(with_images, system_prompt)
    for message in messages:
        if isinstance(message["content"], list):
            message["content"] = [
                {"type": "image_url", "image_url": {"url": image_data_url(next(images))}}
                if part["type"] == "image" else part for part in message["content"]]
    return messages


class _Unavailable(Exception):
    """The server could not be reached for this request after every retry."""


class OpenAIEngine:
    """Generation over HTTP; the attention pass on the local checkpoint."""

    def __init__(self, config: EngineConfig, local: Callable[[], Engine],
                 tokenizer_dir: str | None, system_prompt: str | None,
                 retries: int | None = None, backoff_s: float | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.config, self.system_prompt = config, system_prompt
        self.url = config.url.rstrip("/")
        self.retries = RETRIES if retries is None else retries
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self.samples_per_call = config.concurrency * 4  # enough to keep every slot busy
        slots = config.concurrency
        self.client = httpx.Client(
            timeout=config.timeout_s, transport=transport,
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots))
        self.served = served_model_name(self.url, config.served_model, client=self.client)
        self.supports_n: bool | None = None  # learnt from the first answer
        self.optional = dict.fromkeys(OPTIONAL_FIELDS, True)
        self._local_loader, self._local = local, None
        self._tokenizer_dir, self._tokenizer = tokenizer_dir, None
        self._lock = threading.Lock()
        self._down = threading.Event()  # set when the server stopped answering in a call
        self.stats = {"requests": 0, "retries": 0, "server_token_ids": 0,
                      "retokenised": 0}

    # -- generation ---------------------------------------------------------------------
    def generate(self, items: list[PromptItem], with_images: bool,
                 rollout: RolloutSettings) -> list[list[Response] | SampleError]:
        self._down.clear()
        condition = "mm" if with_images else "text"
        results: list = [None] * len(items)
        order = list(range(len(items)))
        if self.supports_n is None and order and rollout.temperature > 0 and rollout.m > 1:
            first = order.pop(0)  # learns whether the server honours n
            results[first] = self._sample(items[first], with_images, rollout, condition)
        with ThreadPoolExecutor(self.config.concurrency) as pool:
            for i, result in zip(order, pool.map(
                    lambda i: self._sample(items[i], with_images, rollout, condition), order)):
                results[i] = result
        return results

    def _sample(self, item: PromptItem, with_images: bool, rollout: RolloutSettings,
                condition: str) -> list[Response] | SampleError:
        try:
            messages = chat_messages(item, with_images, self.system_prompt)
            if rollout.temperature == 0:  # greedy: one response, repeated (as transformers)
                return self._choices(messages, rollout, 1, None)[:1] * rollout.m
            seeds = [rollout_seed(rollout.seed, item.sample_id, condition, r)
                     for r in range(rollout.m)]
            if self.supports_n is not False:
                got = self._choices(messages, rollout, rollout.m, seeds[0])
                if self.supports_n is None:
                    with self._lock:
                        self.supports_n = len(got) >= rollout.m
                    if not self.supports_n:
                        log.info("the server at %s answered %d choice(s) to n=%d: sending "
                                 "one request per rollout", self.url, len(got), rollout.m)
                if len(got) >= rollout.m:
                    return got[:rollout.m]
                return got[:1] + [self._choices(messages, rollout, 1, s)[0] for s in seeds[1:]]
            return [self._choices(messages, rollout, 1, s)[0] for s in seeds]
        except _Unavailable as exc:
            return SampleError("engine_unavailable", str(exc))
        except SampleError as exc:
            return exc
        except OSError as exc:  # an image that cannot be read
            return SampleError("image_unreadable", f"{type(exc).__name__}: {exc}")

    def _choices(self, messages: list[dict], rollout: RolloutSettings, n: int,
                 seed: int | None) -> list[Response]:
        body = {"model": self.served, "messages": messages, "max_tokens": rollout.max_new_tokens,
                "temperature": rollout.temperature, "top_p": rollout.top_p}
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        extra = {"return_token_ids": True}
        if rollout.temperature > 0:
            extra["generation_config"] = json.dumps({
                "do_sample": True, "temperature": rollout.temperature, "top_p": rollout.top_p,
                "top_k": 0, "max_new_tokens": rollout.max_new_tokens})
        answer = self._post(body, extra)
        choices = sorted(answer.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise SampleError("engine_rejected", f"the server answered no choices: {answer!r:.300}")
        return [self._response(c) for c in choices]

    def _post(self, body: dict, extra: dict) -> dict:
        """The server's JSON answer; retried on 429/5xx, timeouts and lost connections."""
        attempt = 0
        while True:
            if self._down.is_set():
                raise _Unavailable(f"the server at {self.url} stopped answering (another "
                                   "request of this batch failed every retry)")
            sent = {**body, **{k: v for k, v in extra.items() if self.optional.get(k)}}
            answered, delay = False, None
            try:
                with self._lock:
                    self.stats["requests"] += 1
                reply = self.client.post(self.url + "/chat/completions", json=sent)
            except httpx.TimeoutException as exc:
                last = f"timed out after {self.config.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                answered = True
                if reply.status_code == 200:
                    try:
                        return reply.json()
                    except ValueError:
                        last = f"HTTP 200 with a body that is not JSON: {reply.text[:200]!r}"
                elif self._refused_optional(reply, sent):
                    continue  # not an attempt: the field is dropped for good
                elif reply.status_code not in RETRIED_STATUS:
                    raise self._rejected(reply)
                else:
                    last = f"HTTP {reply.status_code}: {reply.text[:200]}"
                    delay = _retry_after(reply)
            attempt += 1
            if attempt >= self.retries:
                if not answered:  # no server there: spare the rest of the batch the waits
                    self._down.set()
                raise _Unavailable(f"no answer from {self.url} after {attempt} attempts: {last}")
            with self._lock:
                self.stats["retries"] += 1
            wait = self.backoff_s * 2 ** (attempt - 1)
            time.sleep(min(max(wait, delay or 0.0), 60.0))

    def _refused_optional(self, reply: httpx.Response, sent: dict) -> bool:
        if reply.status_code not in (400, 422):
            return False
        refused = [k for k in self.optional if k in sent and k in reply.text]
        with self._lock:
            for key in refused:
                self.optional[key] = False
        return bool(refused)

    @staticmethod
    def _rejected(reply: httpx.Response) -> SampleError:
        text = reply.text[:300]
        if reply.status_code == 404:
            raise EngineConfigError(f"the server refused the request with 404: {text}")
        code = ("prompt_too_long" if "context length" in text or "too long" in text
                else "engine_rejected")
        return SampleError(code, f"HTTP {reply.status_code}: {text}")

    def _response(self, choice: dict) -> Response:
        text = (choice.get("message") or {}).get("content") or ""
        ids = choice.get("token_ids")
        if ids:
            with self._lock:
                self.stats["server_token_ids"] += 1
            return Response(text, tuple(int(t) for t in ids))
        with self._lock:
            self.stats["retokenised"] += 1
        return Response(text, self.retokenise(text, choice.get("finish_reason") == "stop"))

    def retokenise(self, text: str, stopped: bool) -> tuple[int, ...]:
        """The response's ids by the local tokenizer (with the end-of-sequence token when the
        model stopped, as the transformers engine stores them)."""
        tokenizer = self.tokenizer()
        if tokenizer is None:
            return ()
        ids = tokenizer.encode(text, add_special_tokens=False)
        if stopped and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
        return tuple(ids)

    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None and self._tokenizer_dir is not None:
                from transformers import AutoTokenizer
                self._tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_dir)
            return self._tokenizer

    # -- attention ----------------------------------------------------------------------
    def attention_column_log_sums(self, items: list[PromptItem], head_reduce: str):
        """On the local checkpoint: no serving engine returns attention weights."""
        if self._local is None:
            self._local = self._local_loader()
        return self._local.attention_column_log_sums(items, head_reduce)


def _retry_after(reply: httpx.Response) -> float | None:
    try:
        return float(reply.headers.get("retry-after", ""))
    except ValueError:
        return None
