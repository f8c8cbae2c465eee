#!/usr/bin/env python3
"""`llava serve` through OpenAI's own Python client (not run in CI: it needs `pip install openai`).

Start a server first, e.g. on the demo's model (`make demo` or ctest's demo_fast writes it):

    build/llava serve --model build/demo-fast/checkpoints/stage2/model \
        --tokenizer build/demo-fast/tokenizer.model --port 8000 --api-key sk-local &
    python3 -m venv /tmp/oaivenv && /tmp/oaivenv/bin/pip install openai
    /tmp/oaivenv/bin/python tools/reference/check_openai_client.py --base-url http://127.0.0.1:8000/v1 \
        --api-key sk-local --image build/demo-fast/data/images/eval_00000.png \
        --question "What color is the shape?" --expect yellow

It checks, with the client's own parsing and validation: models.list(); a plain chat completion with
an image as a data: URL (the answer, finish_reason, usage); the same streamed (the deltas joined equal
the plain answer; the usage chunk with stream_options); a text-only request; that errors arrive as
the client's typed exceptions (BadRequestError for a remote image URL and a wrong type,
AuthenticationError for a wrong key, NotFoundError for an unknown model). Prints one line per check
and exits 1 on the first failure.
"""
import argparse
import base64
import sys

import openai


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--api-key", default="sk-local")
    ap.add_argument("--image", required=True)
    ap.add_argument("--question", default="What color is the shape?")
    ap.add_argument("--expect", default=None, help="the answer the model must give (greedy)")
    a = ap.parse_args()

    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=60)
    failures = 0

    def check(name, ok, detail=""):
        nonlocal failures
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
        if not ok:
            failures += 1

    models = client.models.list()
    ids = [m.id for m in models.data]
    check("models.list", len(ids) == 1, f"{ids}")
    model = ids[0]

    with open(a.image, "rb") as f:
        url = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": a.question},
    ]}]

    r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=32)
    answer = r.choices[0].message.content
    check("chat.completions.create (image as a data: URL)",
          r.object == "chat.completion" and r.choices[0].finish_reason in ("stop", "length")
          and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
          f"{answer!r}, finish_reason {r.choices[0].finish_reason}, usage {r.usage.prompt_tokens}+"
          f"{r.usage.completion_tokens}")
    if a.expect is not None:
        check("the answer", answer == a.expect, f"{answer!r} (want {a.expect!r})")

    parts, finish, usage, n_chunks = [], None, None, 0
    stream = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=32,
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        n_chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                parts.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    streamed = "".join(parts)
    check("chat.completions.create(stream=True)",
          streamed == answer and finish == r.choices[0].finish_reason and usage is not None
          and usage.completion_tokens == r.usage.completion_tokens,
          f"{streamed!r} in {n_chunks} chunks, finish_reason {finish}, usage {usage and usage.total_tokens}")

    t = client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "You answer about shapes."},
        {"role": "user", "content": a.question}], temperature=0, max_tokens=8)
    check("text only, with a system message", isinstance(t.choices[0].message.content, str),
          f"{t.choices[0].message.content!r}")

    def expect_error(name, exc, **kw):
        try:
            client.chat.completions.create(model=model, **kw)
        except exc as e:
            check(name, True, f"{type(e).__name__} {e.status_code}: {e.message[:90]}")
        except Exception as e:  # noqa: BLE001
            check(name, False, f"{type(e).__name__}: {e}")
        else:
            check(name, False, "no error")

    remote = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "What is this?"}]}]
    expect_error("a remote image URL is a 400", openai.BadRequestError, messages=remote)
    expect_error("a wrong type is a 400", openai.BadRequestError, messages=messages, temperature="hot")
    expect_error("n=2 is a 400", openai.BadRequestError, messages=messages, n=2)

    bad_key = openai.OpenAI(base_url=a.base_url, api_key="wrong-key", max_retries=0)
    try:
        bad_key.models.list()
        check("a wrong key is a 401", False, "no error")
    except openai.AuthenticationError as e:
        check("a wrong key is a 401", True, f"{e.status_code}: {e.message[:60]}")
    try:
        client.models.retrieve("no-such-model")
        check("an unknown model is a 404", False, "no error")
    except openai.NotFoundError as e:
        check("an unknown model is a 404", True, f"{e.status_code}")

    print(f"openai {openai.__version__}: {'all checks passed' if not failures else f'{failures} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
