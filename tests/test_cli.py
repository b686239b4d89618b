"""The `moss` command as a user runs it: ask, chat (piped and interrupted), models, errors."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

MOSS = [sys.executable, "-m", "moss"]


def run(*args, stdin=None, timeout=120):
    return subprocess.run([*MOSS, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


def assert_one_line_error(proc, fragment):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], proc.stderr


def test_bad_model_name_or_path_is_one_clear_line(tmp_path):
    assert_one_line_error(run("ask", "-m", "no-such-model", "hi"), "unknown model 'no-such-model'")
    assert_one_line_error(run("ask", "-m", str(tmp_path / "gone.gguf"), "hi"), "model file not found")
    junk = tmp_path / "junk.gguf"
    junk.write_text("junk")
    assert_one_line_error(run("chat", "-m", str(junk)), "not a GGUF model file")
    assert_one_line_error(run("ask", "-m", "small", "--temperature", "9", "hi"), "temperature")
    for epochs in ("3,2", "0,1", "two"):
        assert_one_line_error(run("learn", "-m", "small", "--epochs", epochs), "--epochs takes rising whole numbers")


def test_ask_answers_from_argument_and_stdin():
    by_arg = run("ask", "-m", "small", "--temperature", "0", "--max-tokens", "24", "What is 2+2?")
    by_stdin = run("ask", "-m", "small", "--temperature", "0", "--max-tokens", "24", stdin="What is 2+2?")
    assert by_arg.returncode == 0 and by_arg.stdout.strip()
    assert by_stdin.stdout == by_arg.stdout
    assert_one_line_error(run("ask", "-m", "small", stdin="   "), "empty")


def test_chat_commands_over_a_pipe(tmp_path):
    saved = tmp_path / "conv.json"
    script = "\n".join([
        "Hello, who are you?", "/regen", "/system You are a terse assistant.", "/system",
        f"/save {saved}", "/reset", "/regen", f"/load {saved}", "/load /no/such/file.json",
        "/frobnicate", "/help", "/quit", "never read"]) + "\n"
    proc = run("chat", "-m", "small", "--temperature", "0", "--max-tokens", "32", stdin=script)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    data = json.loads(saved.read_text())
    assert data["system"] == "You are a terse assistant."
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]  # /regen replaced, not added
    assert data["messages"][0]["content"] == "Hello, who are you?"
    assert out.count(data["messages"][1]["content"]) == 2  # first answer and identical regen
    assert "tokens/s" in out and "You are a terse assistant." in out
    assert "nothing to regenerate" in out and "loaded 2 messages" in out
    assert "cannot read /no/such/file.json" in out and "unknown command" in out
    assert "/reset" in out and "never read" not in out  # help shown; nothing after /quit


def test_ctrl_c_stops_the_answer_but_not_the_chat():
    proc = subprocess.Popen([*MOSS, "chat", "-m", "small", "--temperature", "0", "--max-tokens", "2000"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=os.environ.copy())
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(proc.stdout.fileno(), 4096), b"")))
    reader.start()
    try:
        proc.stdin.write(b"Write a very long story about a kingdom by the sea, with many chapters.\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while len(b"".join(chunks).split(b"\n", 1)[-1]) < 40:  # the banner, then some answer text
            assert time.monotonic() < deadline and proc.poll() is None, b"".join(chunks)
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.stdin.write(b"/quit\n")
        proc.stdin.close()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    err = proc.stderr.read()
    out = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err.decode()
    assert out.count("tokens/s") == 1


def test_models_lists_the_registry():
    run("ask", "-m", "small", "--max-tokens", "1", "hi")  # makes the small model ready
    proc = run("models", "--json")
    assert proc.returncode == 0
    rows = {row["name"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == {"qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct",
                         "qwen2.5-coder-1.5b-instruct"}
    assert rows["smollm2-135m-instruct"]["state"] == "ready"
    assert rows["smollm2-135m-instruct"]["location"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert rows["qwen2.5-coder-0.5b-instruct"]["size"] == 491_400_064
    assert rows["qwen2.5-coder-0.5b-instruct"]["location"].startswith(os.environ["MOSS_HOME"])
    table = run("models")
    assert table.returncode == 0 and "smollm2" in table.stdout


def _home_env(home) -> dict:
    return {**os.environ, "MOSS_HOME": str(home)}


def test_the_terminal_logs_every_exchange_and_takes_feedback(tmp_path):
    """`moss ask` and `moss chat` log their exchanges to the local store like the page's, and
    /good, /bad and /correct judge the last answer, ready for `moss learn`."""
    from moss.store import Store
    env = _home_env(tmp_path)
    asked = subprocess.run([*MOSS, "ask", "-m", "small", "--temperature", "0", "--max-tokens", "16", "Say hi."],
                           capture_output=True, text=True, timeout=120, env=env)
    assert asked.returncode == 0, asked.stderr
    script = ("What is the Lumenvale Institute's cat called?\n/correct The cat is called Biscuit Nine.\n"
              "/bad incorrect\nHello!\n/good\n/correct\n/quit\n")
    chat = subprocess.run([*MOSS, "chat", "-m", "small", "--temperature", "0", "--max-tokens", "16"],
                          input=script, capture_output=True, text=True, timeout=120, env=env)
    assert chat.returncode == 0, chat.stderr
    assert "更正已保存" in chat.stdout and chat.stdout.count("noted / 已记录") == 2
    assert "/correct needs the right answer" in chat.stdout  # an empty correction is refused
    store = Store(f"sqlite:///{tmp_path}/moss.db")
    conversations = store.conversations(store.local_user().id)
    assert len(conversations) == 2  # the question asked, and the chat
    judged = {(f.kind, json.dumps(f.value, sort_keys=True)) for f, _ in store.all_feedback()}
    assert judged == {("correction", json.dumps({"content": "The cat is called Biscuit Nine."})),
                      ("rating", json.dumps({"comment": "", "rating": "down", "reasons": ["incorrect"]}, sort_keys=True)),
                      ("rating", json.dumps({"comment": "", "rating": "up", "reasons": []}, sort_keys=True))}
    stats = subprocess.run([*MOSS, "feedback", "stats"], capture_output=True, text=True, timeout=60, env=env)
    assert "correction" in stats.stdout


def test_the_terminal_talks_to_a_running_server(tmp_path):
    """With --url nothing is loaded here: the server answers, stores the exchange and takes the
    feedback, as its page would."""
    import httpx
    from server_process import ServerProcess
    with ServerProcess(tmp_path / "server") as server:
        env = _home_env(tmp_path / "client")  # the terminal's own data directory stays empty
        chat = subprocess.run([*MOSS, "chat", "--url", server.url, "--temperature", "0", "--max-tokens", "16"],
                              input="Say hi.\n/correct Hi there!\n/quit\n", capture_output=True, text=True,
                              timeout=120, env=env)
        assert chat.returncode == 0, chat.stderr
        assert "更正已保存" in chat.stdout
        conversation = httpx.get(server.url + "/v1/conversations").json()["data"][0]
        messages = httpx.get(f"{server.url}/v1/conversations/{conversation['id']}").json()["messages"]
        assert [f["kind"] for f in messages[-1]["feedback"]] == ["correction"]
        assert not (tmp_path / "client" / "moss.db").exists()
        both = subprocess.run([*MOSS, "ask", "--url", server.url, "-m", "small", "hi"], capture_output=True,
                              text=True, timeout=60, env=env)
        assert_one_line_error(both, "--url talks to a server")
