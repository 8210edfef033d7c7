"""Drives `clawdesk serve` with the official OpenAI Python client, as any agent would.

Usage: python openai_client.py BASE_URL MODEL
MODEL is the id the server should answer under (vLLM's default: the `--model` it was given).
Prints one JSON line with the step ids of the session's stored turns. Exits non-zero on the
first failed check.
"""

import base64
import json
import struct
import sys
import zlib

import openai
from openai import OpenAI


def png(width, height, rgb):
    """A solid-colour PNG, made without an imaging library."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main(base, model):
    client = OpenAI(base_url=base + "/v1", api_key="not-needed-on-loopback", max_retries=0)
    ask = [{"role": "user", "content": "Say hello."}]

    models = client.models.list()
    assert [m.id for m in models.data] == [model], models

    plain = client.chat.completions.create(
        model=model, messages=ask, max_tokens=5, seed=3, temperature=1.0, top_p=1.0)
    choice = plain.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length"), choice.finish_reason
    assert 1 <= plain.usage.completion_tokens <= 5, plain.usage

    stream = client.chat.completions.create(
        model=model, messages=ask, max_tokens=5, seed=3, temperature=1.0, top_p=1.0,
        stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(pieces) == choice.message.content, (pieces, choice.message.content)
    assert finish == choice.finish_reason
    assert usage.completion_tokens == plain.usage.completion_tokens

    image = base64.b64encode(png(64, 48, (30, 144, 255))).decode()
    seen = client.chat.completions.create(
        model=model, max_tokens=4,
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What colour is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}])
    # The image's tokens count in the prompt: more than the text alone.
    text_only = client.chat.completions.create(
        model=model, max_tokens=1,
        messages=[{"role": "user", "content": "What colour is this?"}])
    assert seen.usage.prompt_tokens > text_only.usage.prompt_tokens, (seen.usage, text_only.usage)

    scored = client.chat.completions.create(
        model=model, messages=ask, max_tokens=4, logprobs=True, top_logprobs=3)
    tokens = scored.choices[0].logprobs.content
    assert len(tokens) == scored.usage.completion_tokens
    for t in tokens:
        assert t.logprob <= 0.0
        assert 1 <= len(t.top_logprobs) <= 3
        assert any(a.token == t.token and abs(a.logprob - t.logprob) < 1e-6
                   for a in t.top_logprobs), t

    try:
        client.chat.completions.create(model="gpt-4o", messages=ask, max_tokens=1)
        raise AssertionError("an unknown model was served")
    except openai.NotFoundError as e:
        assert e.status_code == 404
    try:
        client.chat.completions.create(model=model, messages=ask, max_tokens=10**6)
        raise AssertionError("an absurd max_tokens was accepted")
    except openai.BadRequestError as e:
        assert "max_tokens" in str(e)
    # A field this server does not do is refused by name, never accepted and ignored.
    for field, value in [("presence_penalty", 0.5), ("logit_bias", {"42": 100}),
                         ("response_format", {"type": "json_object"})]:
        try:
            client.chat.completions.create(model=model, messages=ask, max_tokens=1,
                                           **{field: value})
            raise AssertionError(f"{field}={value!r} was accepted and ignored")
        except openai.BadRequestError as e:
            assert field in str(e), e

    # Learning from use: a two-turn session; the second message corrects the first reply.
    session = {"X-Session-Id": "py-session"}
    first = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=4, extra_headers=session)
    first_step = int(first.headers["x-clawdesk-step"])
    reply = first.parse().choices[0].message.content
    second = client.chat.completions.with_raw_response.create(
        model=model, max_tokens=4, extra_headers=session,
        extra_body={"session_done": True},
        messages=[{"role": "user", "content": "Name a colour."},
                  {"role": "assistant", "content": reply},
                  {"role": "user", "content": "No, name a warm colour."}])
    second_step = int(second.headers["x-clawdesk-step"])
    print(json.dumps({"session_steps": [first_step, second_step]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
