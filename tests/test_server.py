"""The server through the official `openai` client and raw HTTP, against a live `moss serve` on loopback."""

import asyncio
import json
import time

import httpx
import openai
import pydantic
import pytest
from server_process import ServerProcess

ASK = [{"role": "user", "content": "Name three colors of the rainbow."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("serve"), "--parallel", "4") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_non_streaming_completion_has_openai_shape(client):
    r = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=40)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == "smollm2-135m-instruct"
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model_extra["moss"]["conversation_id"]


def test_streaming_matches_non_streaming(client):
    whole = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=40)
    stream = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=40,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3
    assert "".join(pieces) == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_sampling_parameters(client):
    length = client.chat.completions.create(model="moss", messages=ASK, max_completion_tokens=5)
    assert length.choices[0].finish_reason == "length" and length.usage.completion_tokens == 5
    full = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=40)
    text = full.choices[0].message.content
    stop_word = text.split()[len(text.split()) // 2]
    stopped = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=40,
                                             stop=[stop_word])
    assert stopped.choices[0].message.content == text[:text.index(stop_word)]
    seeded = [client.chat.completions.create(model="moss", messages=ASK, temperature=1.0, seed=11,
                                             max_tokens=30).choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]
    two = client.chat.completions.create(model="moss", messages=ASK, temperature=1.0, n=2, max_tokens=20,
                                         user="someone", extra_body={"unknown_field": 1})
    assert [c.index for c in two.choices] == [0, 1]
    assert len(two.model_extra["moss"]["message_ids"]) == 2
    plain = client.chat.completions.create(  # what asks for nothing this server lacks is answered
        model="moss", messages=ASK, max_tokens=3, tool_choice="none", response_format={"type": "text"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert plain.choices[0].message.content


class City(pydantic.BaseModel):
    name: str
    country: str
    population: int


def test_structured_outputs_parse_with_the_official_client(client):
    """response_format json_schema, as the client's parse() sends it: the answer matches the
    schema (a grammar holds it there), streamed or not; json_object gives a JSON object."""
    asked = [{"role": "user", "content": "Describe Paris as JSON: its name, country and population."}]
    parsed = client.chat.completions.parse(model="moss", messages=asked, response_format=City, temperature=0,
                                           max_tokens=80).choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.name
    with client.chat.completions.stream(model="moss", messages=asked, response_format=City,
                                        temperature=0.8, seed=3, max_tokens=80) as stream:
        final = stream.get_final_completion()
    assert isinstance(final.choices[0].message.parsed, City)
    loose = client.chat.completions.create(model="moss", messages=ASK, temperature=1.0, seed=5, max_tokens=80,
                                           response_format={"type": "json_object"})
    assert isinstance(json.loads(loose.choices[0].message.content), dict)


def test_async_client_streams_concurrently(server):
    async def main():
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)

        async def one(i):
            stream = await client.chat.completions.create(
                model="moss", messages=[{"role": "user", "content": f"Write a poem about the number {i}."}],
                max_tokens=30, stream=True, seed=i)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        texts = await asyncio.gather(*(one(i) for i in range(4)))
        plain = await client.chat.completions.create(model="moss", messages=ASK, max_tokens=10)
        await client.close()
        return texts, plain

    texts, plain = asyncio.run(main())
    assert all(texts) and plain.choices[0].message.content


def test_models_health_metrics_docs(client, server):
    assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct"]
    assert client.models.retrieve("moss").id == "smollm2-135m-instruct"
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "smollm2-135m-instruct"
    metrics = httpx.get(server.url + "/metrics").text
    for name in ("moss_requests_total", "moss_tokens_total", "moss_queue_depth",
                 "moss_active_sequences", "moss_time_to_first_token_seconds_bucket",
                 "moss_request_seconds_bucket"):
        assert name in metrics
    assert httpx.get(server.url + "/docs").status_code == 200
    assert "/v1/chat/completions" in httpx.get(server.url + "/openapi.json").json()["paths"]


@pytest.mark.parametrize("body,status,fragment", [
    ({"model": "gpt-4", "messages": ASK}, 404, "does not exist"),
    ({"model": "moss", "messages": []}, 422, "messages"),
    ({"model": "moss", "messages": ASK, "temperature": 7}, 422, "temperature"),
    ({"model": "moss", "messages": ASK, "max_tokens": 10**6}, 400, "max_tokens"),
    ({"model": "moss", "messages": ASK, "n": 100}, 422, "n"),
    ({"model": "moss", "messages": [{"role": "wizard", "content": "hi"}]}, 422, "role"),
    ({"model": "moss", "messages": [{"role": "tool", "content": "x", "tool_call_id": "c"}]}, 400, "tool"),
    ({"model": "moss", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "text"),
    ({"model": "moss", "messages": ASK, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ({"model": "moss", "messages": ASK, "conversation_id": "nope"}, 404, "conversation"),
    ({"model": "moss", "messages": ASK, "functions": [{"name": "f"}]}, 400, "tools"),
    ({"model": "moss", "messages": ASK, "response_format": {"type": "xml"}}, 400, "response_format"),
    ({"model": "moss", "messages": ASK, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}}}}, 400, "schema"),
    ({"model": "moss", "messages": ASK, "logprobs": True}, 400, "logprobs"),
])
def test_bad_requests_get_openai_errors(server, body, status, fragment):
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert fragment in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_malformed_and_oversize_bodies(server):
    r = httpx.post(server.url + "/v1/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["error"]["message"]
    huge = json.dumps({"model": "moss", "messages": [{"role": "user", "content": "x" * (5 << 20)}]})
    assert httpx.post(server.url + "/v1/chat/completions", content=huge,
                      headers={"content-type": "application/json"}).status_code == 413
    chunked = httpx.post(server.url + "/v1/chat/completions", content=iter([huge.encode()[i:i + 65536]
                         for i in range(0, len(huge), 65536)]), headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
    assert httpx.get(server.url + "/v1/nothing-here").json()["error"]["code"] == "not_found"


def test_conversations_are_stored_and_editable(client, server):
    first = client.chat.completions.create(model="moss", messages=[{"role": "user", "content": "Hi there"}],
                                           temperature=0, max_tokens=12)
    conv = first.model_extra["moss"]["conversation_id"]
    history = [{"role": "user", "content": "Hi there"},
               {"role": "assistant", "content": first.choices[0].message.content},
               {"role": "user", "content": "Tell me a joke"}]
    second = client.chat.completions.create(model="moss", messages=history, temperature=0, max_tokens=12)
    assert second.model_extra["moss"]["conversation_id"] == conv  # resent history continues it
    detail = httpx.get(f"{server.url}/v1/conversations/{conv}").json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
    assert detail["messages"][-1]["model_version_id"] == "smollm2-135m-instruct"
    listed = httpx.get(server.url + "/v1/conversations", params={"q": "joke"}).json()["data"]
    assert [c["id"] for c in listed] == [conv]
    assert httpx.patch(f"{server.url}/v1/conversations/{conv}", json={"title": "Jokes"}).json()["title"] == "Jokes"
    assert httpx.delete(f"{server.url}/v1/conversations/{conv}").json()["deleted"] is True
    assert httpx.get(f"{server.url}/v1/conversations/{conv}").status_code == 404


def test_auth_isolation_rate_limit_and_quota(tmp_path):
    server = ServerProcess(tmp_path, "--auth")
    keys = {}
    for name, *limits in (("alice",), ("bob",), ("carol", "--rate-limit", "2"), ("dave", "--daily-tokens", "50")):
        added = server.moss("users", "add", name, *limits)
        assert added.returncode == 0, added.stderr
        keys[name] = added.stdout.strip()
    with server:
        anonymous = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.chat.completions.create(model="moss", messages=ASK)
        assert httpx.get(server.url + "/v1/conversations").status_code == 401
        as_ = lambda who: openai.OpenAI(base_url=server.url + "/v1", api_key=keys[who], max_retries=0)  # noqa: E731
        r = as_("alice").chat.completions.create(model="moss", messages=ASK, max_tokens=5)
        conv = r.model_extra["moss"]["conversation_id"]
        alice = {"Authorization": f"Bearer {keys['alice']}"}
        bob = {"Authorization": f"Bearer {keys['bob']}"}
        assert [c["id"] for c in httpx.get(server.url + "/v1/conversations", headers=alice).json()["data"]] == [conv]
        assert httpx.get(server.url + "/v1/conversations", headers=bob).json()["data"] == []
        assert httpx.get(f"{server.url}/v1/conversations/{conv}", headers=bob).status_code == 404
        assert httpx.delete(f"{server.url}/v1/conversations/{conv}", headers=bob).status_code == 404
        assert httpx.get(f"{server.url}/v1/conversations/{conv}", headers=alice).status_code == 200
        # carol: 2 requests a minute, the third is refused with Retry-After
        carol = {"Authorization": f"Bearer {keys['carol']}"}
        body = {"model": "moss", "messages": ASK, "max_tokens": 3}
        codes = [httpx.post(server.url + "/v1/chat/completions", json=body, headers=carol, timeout=60)
                 for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]
        assert codes[2].json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(codes[2].headers["Retry-After"]) <= 60
        # dave: 50 tokens a day; the first answer spends them
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(2):
                as_("dave").chat.completions.create(model="moss", messages=ASK, max_tokens=5)
        assert refused.value.response.json()["error"]["code"] == "quota_exceeded"
        # a disabled user is locked out at once
        assert server.moss("users", "disable", "alice").returncode == 0
        with pytest.raises(openai.AuthenticationError):
            as_("alice").chat.completions.create(model="moss", messages=ASK, max_tokens=3)


def test_full_queue_answers_429_at_once(tmp_path):
    with ServerProcess(tmp_path, "--parallel", "1", "--max-queue", "1") as server:
        async def main():
            async with httpx.AsyncClient(timeout=120) as http:
                async def one(i):
                    start = time.monotonic()
                    r = await http.post(server.url + "/v1/chat/completions", json={
                        "model": "moss", "max_tokens": 150, "temperature": 0,
                        "messages": [{"role": "user", "content": f"Write a long story number {i}."}]})
                    return r.status_code, time.monotonic() - start, r
                first = asyncio.create_task(one(0))
                while not (await http.get(server.url + "/health")).json()["active"]:  # the first is decoding
                    assert not first.done(), await first
                    await asyncio.sleep(0.05)
                rest = await asyncio.gather(*(one(i) for i in range(1, 5)))
                return [await first, *rest]

        results = asyncio.run(main())
        codes = [code for code, _, _ in results]
        assert codes.count(200) >= 2 and codes.count(429) >= 1
        for code, seconds, response in results:
            if code == 429:
                assert seconds < 2 and response.headers["Retry-After"] == "1"
                assert response.json()["error"]["code"] == "server_busy"


def test_client_disconnect_cancels_generation(tmp_path):
    with ServerProcess(tmp_path, "--parallel", "1") as server:
        body = {"model": "moss", "max_tokens": 1500, "temperature": 0, "stream": True,
                "messages": [{"role": "user", "content": "Write a very long essay about the sea."}]}
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as r:
            lines = r.iter_lines()
            for _ in range(6):
                next(lines)
        deadline = time.monotonic() + 5  # the full answer would take far longer than this
        while httpx.get(server.url + "/health").json()["active"]:
            assert time.monotonic() < deadline, "generation still running after the client left"
            time.sleep(0.1)
        assert "moss_generations_cancelled_total 1.0" in httpx.get(server.url + "/metrics").text


def test_answer_survives_kill_9_right_after_the_response(tmp_path):
    server = ServerProcess(tmp_path).start()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    r = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=20)
    server.kill()  # SIGKILL: no shutdown handlers run
    with ServerProcess(tmp_path) as again:
        conv = r.model_extra["moss"]["conversation_id"]
        detail = httpx.get(f"{again.url}/v1/conversations/{conv}").json()
        assert [m["content"] for m in detail["messages"]] == [ASK[0]["content"], r.choices[0].message.content]
        assert detail["messages"][1]["id"] == r.model_extra["moss"]["message_ids"][0]


def test_random_bodies_never_cause_a_500(server):
    """A bounded fuzz: mutated requests get an answer or an OpenAI error, never a server error."""
    import random
    rng = random.Random(1234)
    junk = [None, True, -1, 0, 3, 2**63, -2**63, 1e308, float("nan"), "", "x" * 300, "moss", [], {},
            [1, "a"], {"a": {"b": []}}, [{"role": "user"}], [{"role": "user", "content": None}],
            [{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}], "\u0000\ud7ff"]
    fields = ["model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature",
              "top_p", "top_k", "seed", "n", "stop", "user", "stream_options", "conversation_id", "extra"]
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for _ in range(150):
            body = {"model": "moss", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            for field in rng.sample(fields, rng.randint(1, 3)):
                body[field] = rng.choice(junk)
            if isinstance(body.get("max_tokens"), int) and not isinstance(body["max_tokens"], bool):
                body["max_tokens"] = min(body["max_tokens"], 2)
            body.pop("max_completion_tokens", None) if body.get("max_completion_tokens") not in (None, 1) else None
            r = http.post("/v1/chat/completions", content=json.dumps(body, allow_nan=True),
                          headers={"content-type": "application/json"})
            assert r.status_code < 500, (body, r.text)
            if r.status_code >= 400:
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_feedback_api(client, server):
    r = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=8, n=2, seed=3)
    first, second = r.model_extra["moss"]["message_ids"]
    url = f"{server.url}/v1/messages/{first}/feedback"
    rating = {"kind": "rating", "rating": "down", "reasons": ["incorrect", "too_long"], "comment": "meh"}
    assert httpx.post(url, json=rating).json()["value"] == {k: v for k, v in rating.items() if k != "kind"}
    changed = httpx.post(url, json={"kind": "rating", "rating": "up"}).json()
    assert changed["value"]["rating"] == "up"  # one rating per person: changed, not added
    assert httpx.post(url, json={"kind": "comparison", "other_message_id": second, "choice": "tie"}).status_code == 200
    assert [f["kind"] for f in httpx.get(url).json()["data"]] == ["rating", "comparison"]
    assert httpx.delete(f"{url}/rating").json()["deleted"] is True
    assert httpx.delete(f"{url}/rating").status_code == 404
    for bad, status in (({"kind": "rating", "rating": "meh"}, 422), ({"kind": "cheer"}, 422),
                        ({"kind": "correction", "content": ""}, 422),
                        ({"kind": "rating", "rating": "up", "reasons": ["boring"]}, 422),
                        ({"kind": "comparison", "other_message_id": first, "choice": "this"}, 400)):
        response = httpx.post(url, json=bad)
        assert response.status_code == status, (bad, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.post(f"{server.url}/v1/messages/nope/feedback", json={"kind": "flag"}).status_code == 404
    conv = httpx.get(f"{server.url}/v1/conversations/{r.model_extra['moss']['conversation_id']}").json()
    question = next(m for m in conv["messages"] if m["role"] == "user")
    assert httpx.post(f"{server.url}/v1/messages/{question['id']}/feedback",
                      json={"kind": "flag"}).status_code == 400  # only answers are judged


def test_server_on_postgresql(tmp_path, postgres_url):
    """The same server with MOSS_DATABASE_URL: migrations, users, answers and feedback in PostgreSQL."""
    env = {"MOSS_DATABASE_URL": postgres_url}
    server = ServerProcess(tmp_path, "--auth", env=env)
    added = server.moss("users", "add", f"pg-{tmp_path.name[-8:]}")
    assert added.returncode == 0, added.stderr
    with server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=added.stdout.strip(), max_retries=0)
        r = client.chat.completions.create(model="moss", messages=ASK, temperature=0, max_tokens=8)
        answer_id = r.model_extra["moss"]["message_ids"][0]
        headers = {"Authorization": f"Bearer {added.stdout.strip()}"}
        assert httpx.post(f"{server.url}/v1/messages/{answer_id}/feedback", headers=headers,
                          json={"kind": "rating", "rating": "up"}).status_code == 200
    assert not (tmp_path / "moss.db").exists()  # nothing went to SQLite
    from moss.store import Store
    store = Store(postgres_url)
    try:
        message = store.messages_by_id({answer_id})[answer_id]
        assert message.content == r.choices[0].message.content and message.prompt[0]["role"] == "system"
        assert [f.kind for f in store.feedback_on(message.user_id, [answer_id])[answer_id]] == ["rating"]
    finally:
        store.close()
