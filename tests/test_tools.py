"""Tool calls through the OpenAI API: tools, tool_choice (auto, none, required, a named function),
parallel calls, role "tool" results, streamed call deltas, with the official client; calls are
held to their functions' schemas by a grammar, so they always parse."""

import json
import os
import subprocess
import sys

import httpx
import openai
import pydantic
import pytest
from openai import pydantic_function_tool
from server_process import ServerProcess
from sqlalchemy import select

from moss.inference import toolcalls
from moss.inference.engine import Sampling
from moss.store import Store
from moss.store.schema import Message
from moss.tools import builtin, knowledge, maths
from moss.tools.expressions import MathError
from moss.tools.turn import ToolEngine

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The time now in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Multiply(pydantic.BaseModel):
    """Multiply two whole numbers."""
    a: int
    b: int


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("tools"), "--parallel", "2") as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def _weather(arguments: str) -> dict:
    found = json.loads(arguments)
    assert set(found) == {"city", "unit"} and found["unit"] in ("celsius", "fahrenheit") and isinstance(found["city"], str)
    return found


# ---- the format, without a model ----

def test_calls_are_parsed_whole_or_left_as_text():
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}\n' \
           '</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, calls = toolcalls.parse(text)
    assert content == "Let me check." and [c.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].arguments) == {"city": "Paris", "unit": "celsius"} and calls[0].id != calls[1].id
    cut = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Pa'
    assert toolcalls.parse(cut) == (cut, [])  # cut by the token limit: text, not a broken call
    assert toolcalls.parse("3 < 4 and <tool_call>") == ("3 < 4 and <tool_call>", [])
    bare = toolcalls.parse(' {"name": "get_time", "arguments": {"city": "Oslo"}}')  # small models leave out the tags
    assert bare[0] == "" and [(c.name, json.loads(c.arguments)) for c in bare[1]] == [("get_time", {"city": "Oslo"})]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_a_stream_shows_text_as_it_comes_and_each_call_whole(size):
    text = 'Sure <b>.\n<tool_call>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call>\n' \
           '<tool_call>\n{"name": "get_time", "arguments": {"city": "Rome"}}\n</tool_call>'
    splitter, shown, calls = toolcalls.Splitter(), "", []
    for i in range(0, len(text), size):
        piece, done = splitter.feed(text[i:i + size])
        shown += piece
        calls += done
    shown += splitter.finish()[0]
    assert shown == "Sure <b>.\n" and [json.loads(c.arguments)["city"] for c in calls] == ["Oslo", "Rome"]
    plain = toolcalls.Splitter()
    assert plain.feed("a <tool")[0] == "a " and plain.finish() == ("<tool", [])  # held back, then given at the end
    bare = toolcalls.Splitter()
    assert bare.feed('{"name": "get_time", ')[0] == "" and bare.feed('"arguments": {"city": "Oslo"}}') == ("", [])
    assert [c.name for c in bare.finish()[1]] == ["get_time"]
    braces = toolcalls.Splitter()  # JSON that is not a call shows as text
    assert braces.feed('{"a"')[0] == '{"a"' and braces.finish() == ("", [])


def test_results_go_back_in_one_user_turn_and_functions_in_the_system_message():
    functions = [toolcalls.Function("get_time", "The time.", {"type": "object"})]
    messages = [{"role": "user", "content": "Time in Oslo and Rome?"},
                {"role": "assistant", "content": "<tool_call>...</tool_call>"},
                {"role": "tool", "content": "10:00"}, {"role": "tool", "content": "10:00"}]
    made = toolcalls.prompt(messages, functions)
    assert [m["role"] for m in made] == ["system", "user", "assistant", "user"]
    assert made[-1]["content"].count("<tool_response>") == 2 and '"name": "get_time"' in made[0]["content"]
    assert made[0]["content"].startswith("You are Moss")  # after the meta instruction, whose cache serves
    assert toolcalls.prompt(messages[:1], []) == messages[:1]


def test_the_grammar_holds_calls_to_the_schema(small_engine):
    """Even a 135M model that knows nothing of tools writes calls that parse and match."""
    functions = [toolcalls.Function(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
                 for t in (WEATHER, TIME)]
    for choice, names in ((toolcalls.Choice("required"), {"get_weather", "get_time"}),
                          (toolcalls.Choice("function", "get_time", parallel=False), {"get_time"})):
        rules, triggers = toolcalls.grammar(functions, choice)
        assert triggers == ()
        answer = small_engine.generate(toolcalls.prompt(ASK, functions),
                                       Sampling(temperature=0.9, seed=4, max_tokens=120, grammar=rules)).text()
        content, calls = toolcalls.parse(answer)
        assert content == "" and calls and {c.name for c in calls} <= names, answer
        for call in calls:
            _weather(call.arguments) if call.name == "get_weather" else json.loads(call.arguments)["city"]


def test_the_default_model_calls_a_tool_when_it_needs_one_and_not_otherwise(default_engine):
    """Qwen2.5 was trained on this format: left to choose (auto, a lazy grammar), it calls the
    weather tool for the weather and answers a greeting in words."""
    functions = [toolcalls.Function("get_weather", WEATHER["function"]["description"], WEATHER["function"]["parameters"])]
    rules, triggers = toolcalls.grammar(functions, toolcalls.Choice("auto"))
    sampling = Sampling(temperature=0, max_tokens=80, grammar=rules, grammar_triggers=triggers, special=True)
    answer = default_engine.generate(toolcalls.prompt(ASK, functions), sampling).text()
    calls = toolcalls.parse(answer)[1]
    assert [c.name for c in calls] == ["get_weather"] and _weather(calls[0].arguments)["city"] == "Paris", answer
    hello = default_engine.generate(toolcalls.prompt([{"role": "user", "content": "Hello! How are you?"}], functions),
                                    sampling).text()
    assert toolcalls.parse(hello)[1] == [] and hello.strip(), hello


# ---- through the API ----

def test_required_and_named_calls_with_the_official_client(client):
    forced = client.chat.completions.create(model="moss", messages=ASK, tools=[WEATHER, TIME], tool_choice="required",
                                            temperature=0, max_tokens=120)
    choice = forced.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert all(c.type == "function" and c.id.startswith("call_") for c in choice.message.tool_calls)
    named = client.chat.completions.create(model="moss", messages=ASK, tools=[WEATHER, TIME], max_tokens=120,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    calls = named.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather"] and _weather(calls[0].function.arguments)
    # the call and its result go back; the model answers from them, tools or not
    history = ASK + [named.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": calls[0].id, "content": '{"temperature": 21, "sky": "clear"}'}]
    answer = client.chat.completions.create(model="moss", messages=history, tools=[WEATHER], tool_choice="none",
                                            temperature=0, max_tokens=30)
    assert answer.choices[0].finish_reason in ("stop", "length") and answer.choices[0].message.content
    assert answer.choices[0].message.tool_calls is None


def test_streamed_calls_come_as_deltas_the_client_assembles(client):
    kwargs = dict(model="moss", messages=ASK, tools=[WEATHER, TIME], temperature=0.7, seed=2, max_tokens=150,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}})
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].function.arguments == ""
    assert _weather("".join(d.function.arguments or "" for d in deltas))
    assert chunks[-1].choices[0].finish_reason == "tool_calls" or chunks[-2].choices[0].finish_reason == "tool_calls"
    with client.chat.completions.stream(**kwargs) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_strict_pydantic_tools_parse(client):
    """client.chat.completions.parse with pydantic_function_tool: strict schemas, parsed arguments."""
    parsed = client.chat.completions.parse(model="moss", messages=[{"role": "user", "content": "What is 17 times 23?"}],
                                           tools=[pydantic_function_tool(Multiply)], tool_choice="required", parallel_tool_calls=False,
                                           temperature=0, max_tokens=100)
    call = parsed.choices[0].message.tool_calls[0]
    assert call.function.name == "Multiply" and isinstance(call.function.parsed_arguments, Multiply)


def test_a_call_is_stored_with_its_answer(client, server):
    named = client.chat.completions.create(model="moss", messages=ASK, tools=[TIME], max_tokens=80, temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "get_time"}})
    conversation = named.model_extra["moss"]["conversation_id"]
    stored = httpx.get(f"{server.url}/v1/conversations/{conversation}").json()["messages"]
    assert "<tool_call>" in stored[-1]["content"] and '"get_time"' in stored[-1]["content"]


@pytest.mark.parametrize("body,fragment", [
    ({"tools": [TIME], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "two words"}}]}, "name"),
    ({"tools": [TIME, TIME]}, "same name"),
    ({"tool_choice": "required"}, "needs tools"),
    ({"tools": [TIME], "response_format": {"type": "json_object"}}, "together"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/nowhere"}}}]}, "schema"),
    ({"messages": ASK + [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]}, "tool_call_id"),
    ({"messages": ASK + [{"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "get_time", "arguments": "not json"}}]}]}, "JSON object"),
])
def test_bad_tool_requests_get_openai_errors(server, body, fragment):
    r = httpx.post(server.url + "/v1/chat/completions", json={"model": "moss", "messages": ASK, **body}, timeout=60)
    assert r.status_code in (400, 422), r.text
    assert fragment in r.json()["error"]["message"], r.text


# ---- Moss's own tools ----

def test_the_calculator_is_exact_converts_units_and_runs_no_python():
    assert maths.calculate("17 * 23") == "17 * 23 = 391"
    assert maths.calculate("2^100") == f"2^100 = {2 ** 100}"
    assert maths.calculate("0.1 + 0.2") == "0.1 + 0.2 = 3/10 ≈ 0.3"  # exact, not 0.30000000000000004
    assert maths.calculate("（3＋4）×5") == "（3＋4）×5 = 35" and maths.calculate("12.5%") == "12.5% = 1/8 ≈ 0.125"
    assert maths.calculate("26.2 mi to km") == "26.2 mi = 42.1648128 km"
    assert maths.calculate("100 km/h 换算成 m/s") == "100 km/h = 27.7777777778 m/s"
    assert maths.calculate("121 = 11^2") == "121 = 121 and 11^2 = 121: equal"  # an equality, checked
    for bad, says in (("__import__('os').system('id')", "cannot use"), ("().__class__.__bases__", "cannot use"),
                      ("9^9^9", "too large"), ("factorial(10^6)", "too large"), ("1/0", "zero"),
                      ("3 m to s", "differ"), ("x + 1", "unknown name")):
        with pytest.raises(MathError, match=says):
            maths.calculate(bad)


def test_the_solver_solves_differentiates_and_integrates():
    assert maths.solve("solve", "x^2 - 5x + 6 = 0") == "x = 2; x = 3"
    assert maths.solve("solve", "x + y = 3; x - y = 1") == "x = 2, y = 1"
    assert maths.solve("derivative", "x^3 + sin(x)") == "d/dx (x^3 + sin(x)) = 3*x**2 + cos(x)"
    assert maths.solve("integral", "x^2", lower="0", upper="3") == "integral of x^2 from 0 to 3 = 9"
    assert maths.solve("factor", "x^2 - 5x + 6") == "factor(x^2 - 5x + 6) = (x - 3)*(x - 2)"
    assert maths.solve("limit", "sin(x)/x", upper="0") == "limit of sin(x)/x as x -> 0 = 1"


def test_a_call_runs_in_a_worker_that_a_time_limit_kills():
    done = builtin.run(toolcalls.ToolCall("call_1", "calculator", '{"expression": "2^10"}'))
    assert done.ok and done.result == "2^10 = 1024"
    slow = builtin.run(toolcalls.ToolCall("call_2", "solver", json.dumps(
        {"operation": "integral", "expression": "exp(sin(x)^3) * log(x + cos(x)^7) / (x^5 + tan(x))"})), time_limit=0.5)
    assert not slow.ok and "stopped" in slow.result and slow.seconds < 5
    assert builtin.run(toolcalls.ToolCall("call_3", "calculator", '{"expression": "6*7"}')).result == "6*7 = 42"
    wrong = builtin.run(toolcalls.ToolCall("call_4", "calculator", '{"expression": "import os"}'))
    assert not wrong.ok and wrong.result.startswith("error: cannot read")  # the model reads why


def test_the_default_model_answers_from_the_calculator(default_engine):
    """Measured: without tools this model says 17 * 23 is 401."""
    turn = ToolEngine(default_engine, builtin.pick(["calculator", "solver"])).generate(
        [{"role": "user", "content": "What is 17 * 23?"}], Sampling(temperature=0, max_tokens=120))
    answer = turn.text()
    assert [r.call.name for r in turn.runs][:1] == ["calculator"] and "391" in answer, (answer, turn.runs)
    assert turn.result.tool_runs[0]["result"].endswith("= 391") and "<tool_call>" not in answer
    plain = ToolEngine(default_engine, builtin.pick(["calculator"])).generate(
        [{"role": "user", "content": "Hello! Who are you?"}], Sampling(temperature=0, max_tokens=60))
    assert plain.text().strip() and plain.runs == []


def test_builtin_tools_through_the_api(client, server):
    reply = client.chat.completions.create(model="moss", messages=[{"role": "user", "content": "What is 6 * 7?"}],
                                           temperature=0, max_tokens=60, extra_body={"builtin_tools": ["calculator"]})
    assert reply.choices[0].message.content is not None and reply.choices[0].message.tool_calls is None
    runs = reply.model_extra["moss"]["tool_runs"]
    assert all(set(r) == {"name", "arguments", "result", "ok"} for r in runs)
    conversation = reply.model_extra["moss"]["conversation_id"]
    stored = httpx.get(f"{server.url}/v1/conversations/{conversation}").json()["messages"][-1]
    assert (stored["tool_runs"] or []) == runs
    for body, fragment in (({"builtin_tools": ["calculator"], "tools": [TIME]}, "builtin_tools"),
                           ({"builtin_tools": ["rm"]}, "builtin_tools"), ({"builtin_tools": ["calculator"], "n": 2}, "n > 1")):
        r = httpx.post(server.url + "/v1/chat/completions", json={"model": "moss", "messages": ASK, **body})
        assert r.status_code in (400, 422) and fragment in r.text, r.text


def test_moss_ask_with_tools_and_a_bad_tool_name(tmp_path):
    env = {**os.environ, "MOSS_HOME": str(tmp_path)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "moss", "ask", "-m", "small", "--max-tokens", "40",  # noqa: E731
                                        "--temperature", "0", *args], capture_output=True, text=True, env=env, timeout=180)
    done = run("--tools", "calculator,solver", "What is 6 * 7?")
    assert done.returncode == 0 and done.stdout.strip() and "Traceback" not in done.stderr, done.stderr
    stored = Store(f"sqlite:///{tmp_path}/moss.db")
    with stored.session() as s:
        answer = s.scalars(select(Message).where(Message.role == "assistant")).one()
    assert answer.content == done.stdout.strip() and isinstance(answer.tool_runs, list)
    stored.close()
    bad = run("--tools", "rm", "hi")
    assert bad.returncode == 1 and "--tools: no built-in tool rm" in bad.stderr and "Traceback" not in bad.stderr
    remote = run("--tools", "calculator", "--url", "http://127.0.0.1:9", "hi")
    assert remote.returncode == 1 and "leave out --url" in remote.stderr


def test_python_runs_in_the_sandbox_and_its_errors_are_results():
    done = builtin.run(toolcalls.ToolCall("call_1", "python", json.dumps({"code": "print(sum(range(101)))"})))
    assert done.ok and done.result == "5050"
    failed = builtin.run(toolcalls.ToolCall("call_2", "python", json.dumps({"code": "print(1/0)"})))
    assert not failed.ok and "ZeroDivisionError" in failed.result
    reach = "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=3)\nprint('reached')"
    cut_off = builtin.run(toolcalls.ToolCall("call_3", "python", json.dumps({"code": reach})))
    assert not cut_off.ok and "reached" not in cut_off.result  # no network in the sandbox
    silent = builtin.run(toolcalls.ToolCall("call_4", "python", json.dumps({"code": "x = 6 * 7"})))
    assert silent.ok and "printed nothing" in silent.result


def _pdf(path, text: str) -> None:
    """A one-page PDF that says `text` (ASCII), written by hand: no PDF writer installs here."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(out)


def test_the_knowledge_base_reads_documents_finds_passages_and_numbers_them(tmp_path):
    (tmp_path / "lighthouse.md").write_text("# The Quillmere Lighthouse\n\nIt was built in 1871 by the engineer "
                                            "Edda Thornvik.\n\nIts lamp is seen 22 nautical miles away.", encoding="utf-8")
    (tmp_path / "tea.html").write_text("<html><head><title>云岭茶园</title><script>var secret = 1;</script></head><body>"
                                       "<p>云岭茶园位于青川县，始建于一九五六年。</p></body></html>", encoding="utf-8")
    _pdf(tmp_path / "harbour.pdf", "The Brightwater harbour was dredged in 1932.")
    (tmp_path / "notes.docx").write_bytes(b"PK")
    base = knowledge.KnowledgeBase(tmp_path / "kb")
    assert [base.add(tmp_path / name) for name in ("lighthouse.md", "tea.html", "harbour.pdf")] == [1, 1, 1]
    assert base.sources() == {"lighthouse.md": 1, "tea.html": 1, "harbour.pdf": 1}
    assert base.search("Who built the Quillmere Lighthouse?")[0].title == "The Quillmere Lighthouse"
    tea = base.search("云岭茶园是哪一年建的？")[0]
    assert tea.title == "云岭茶园" and "青川县" in tea.text and "secret" not in tea.text
    assert "1932" in base.search("When was Brightwater harbour dredged?")[0].text
    assert base.search("What is the capital of France?") == []
    with pytest.raises(knowledge.KnowledgeError, match="only"):
        base.add(tmp_path / "notes.docx")
    assert base.remove("tea.html") == 1 and "tea.html" not in knowledge.KnowledgeBase(tmp_path / "kb").sources()
    long = " ".join(f"Sentence {i} is about the harbour." for i in range(200))
    assert all(len(p) <= knowledge.PASSAGE_CHARS for p in knowledge.cut(long)) and len(knowledge.cut(long)) > 5


def test_moss_kb_and_the_search_tool_cite_passages(moss_home, tmp_path):
    (tmp_path / "lighthouse.md").write_text("# The Quillmere Lighthouse\n\nIt was built in 1871 by the engineer "
                                            "Edda Thornvik.", encoding="utf-8")
    moss = lambda *args: subprocess.run([sys.executable, "-m", "moss", "kb", *args], capture_output=True,  # noqa: E731
                                        text=True, timeout=120)
    added = moss("add", str(tmp_path / "lighthouse.md"))
    assert added.returncode == 0 and "1 passages" in added.stderr
    assert "lighthouse.md\t1 passages" in moss("list").stdout
    found = builtin.run(toolcalls.ToolCall("call_1", "knowledge_search", '{"query": "Who built the Quillmere Lighthouse?"}'))
    assert found.ok and found.result.startswith("[1] The Quillmere Lighthouse (lighthouse.md, passage 1)")
    assert "Edda Thornvik" in found.result and "[1]" in found.result
    bad = moss("add", str(tmp_path / "missing.txt"))
    assert bad.returncode == 1 and "missing.txt" in bad.stderr and "Traceback" not in bad.stderr
    assert moss("remove", "lighthouse.md").returncode == 0 and moss("list").stdout == ""
