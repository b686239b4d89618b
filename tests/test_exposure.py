"""Safe to expose: no-auth mode stays on this machine, foreign hosts and pages are refused, the admin
API is for admins, no user takes the whole server, and no request grows the database without bound."""

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest
from server_process import ServerProcess
from starlette.testclient import TestClient

from moss.inference.loading import open_engine
from moss.server.access import Limits
from moss.server.app import create_app
from moss.store import Store

ASK = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("exposure"), "--allowed-host", "moss.example") as s:
        yield s


def test_a_public_host_needs_auth_or_insecure(tmp_path):
    refused = ServerProcess(tmp_path, "--host", "0.0.0.0").moss("serve", "--host", "0.0.0.0", "-m", "small")
    assert refused.returncode == 1 and "--auth" in refused.stderr and "Traceback" not in refused.stderr
    with ServerProcess(tmp_path, "--host", "0.0.0.0", "--insecure") as exposed:
        assert httpx.get(exposed.url + "/health").status_code == 200
    assert "WARNING" in exposed.proc.stdout.read().decode()


def test_foreign_host_names_are_refused(server):
    port = server.port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2"):
        r = httpx.get(server.url + "/", headers={"Host": host})
        assert r.status_code == 403 and "host name" in r.json()["error"]["message"], host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "moss.example", f"[::1]:{port}"):
        assert httpx.get(server.url + "/health", headers={"Host": host}).status_code == 200, host


def test_pages_of_other_sites_cannot_change_anything(server):
    own = {"Origin": server.url}
    assert httpx.post(server.url + "/v1/conversations", json={}, headers=own).status_code == 200
    for origin in ("http://evil.example", "null", f"http://localhost:{server.port + 1}"):
        r = httpx.post(server.url + "/v1/conversations", json={}, headers={"Origin": origin})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", origin
        r = httpx.post(server.url + "/v1/chat/completions", headers={"Origin": origin},
                       json={"model": "moss", "messages": ASK, "max_tokens": 2})
        assert r.status_code == 403, origin
    # reading is harmless: the browser keeps a foreign page from seeing the answer (no CORS)
    r = httpx.get(server.url + "/v1/models", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_the_page_is_served_with_a_content_security_policy(server):
    for path in ("/", "/static/app.js", "/v1/models"):
        policy = httpx.get(server.url + path).headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
        assert "img-src 'self' data:" in policy and "frame-ancestors 'none'" in policy


def test_the_local_user_has_no_rate_limit(server):
    """Without --auth the one person on this machine is not throttled (80 questions a minute got
    429 before); with --auth the default of 60 a minute stays (test_server's carol)."""
    body = {"model": "moss", "messages": ASK, "max_tokens": 1, "temperature": 0}
    with httpx.Client(timeout=60) as http:
        codes = [http.post(server.url + "/v1/chat/completions", json=body).status_code for _ in range(70)]
    assert codes == [200] * 70


@pytest.fixture
def app_for(tmp_path):
    """A server app in this process, so that a test can be a client from any address."""
    apps = []

    def make(auth: bool) -> tuple:
        engine = open_engine("small", context_size=512)
        store = Store(f"sqlite:///{tmp_path}/moss-{len(apps)}.db")
        apps.append(create_app(engine, store, auth=auth, limits=Limits()))
        return apps[-1], store
    return make


def test_admin_api_is_for_admins_and_without_auth_for_this_machine_only(app_for):
    app, _ = app_for(auth=False)
    with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 5000)) as local:
        assert local.get("/v1/admin/versions").status_code == 200
    with TestClient(app, base_url="http://localhost", client=("203.0.113.7", 5000)) as remote:
        r = remote.get("/v1/admin/versions")
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_admin"
        assert remote.post("/v1/admin/rollback", json={}).status_code == 403
        assert remote.get("/v1/models").status_code == 200  # the rest of the API is the --insecure choice
    app, store = app_for(auth=True)
    _, admin_key = store.add_user("root", admin=True)
    _, user_key = store.add_user("user")
    with TestClient(app, base_url="http://localhost", client=("203.0.113.7", 5000)) as remote:
        assert remote.get("/v1/admin/versions", headers={"Authorization": f"Bearer {user_key}"}).status_code == 403
        assert remote.get("/v1/admin/versions", headers={"Authorization": f"Bearer {admin_key}"}).status_code == 200


def test_one_user_holds_at_most_their_share(tmp_path):
    """--parallel 1 --max-queue 3 --user-share 0.5: alice may hold 2 of the 4 places, bob still gets in."""
    server = ServerProcess(tmp_path, "--auth", "--parallel", "1", "--max-queue", "3", "--user-share", "0.5")
    keys = {name: server.moss("users", "add", name).stdout.strip() for name in ("alice", "bob")}
    long = {"model": "moss", "max_tokens": 200, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]}

    async def main():
        async with httpx.AsyncClient(timeout=300) as http:
            def ask(who, **extra):
                return asyncio.create_task(http.post(server.url + "/v1/chat/completions", json={**long, **extra},
                                                     headers={"Authorization": f"Bearer {keys[who]}"}))
            alice = [ask("alice") for _ in range(4)]
            await asyncio.wait(alice, return_when=asyncio.FIRST_COMPLETED)  # a refusal comes back at once
            bob = await ask("bob", max_tokens=3)  # while alice holds her two places
            return await asyncio.gather(*alice), await ask("alice", n=3), bob
    with server:
        alice, alice_n, bob = asyncio.run(main())
    codes = sorted(r.status_code for r in alice)
    assert codes == [200, 200, 429, 429], codes
    assert "share" in [r for r in alice if r.status_code == 429][0].json()["error"]["message"]
    assert alice_n.status_code == 429, "n=3 counts as 3 places"
    assert bob.status_code == 200


def test_conversation_and_feedback_endpoints_are_rate_limited(tmp_path):
    server = ServerProcess(tmp_path, "--auth", "--api-rate-limit", "5")
    key = server.moss("users", "add", "carol").stdout.strip()
    with server:
        headers = {"Authorization": f"Bearer {key}"}
        codes = [httpx.get(server.url + "/v1/conversations", params={"q": "x"}, headers=headers).status_code
                 for _ in range(6)]
        assert codes == [200] * 5 + [429]
        r = httpx.post(server.url + "/v1/messages/nope/feedback", headers=headers,
                       json={"kind": "rating", "rating": "up"})
        assert r.status_code == 429 and r.headers["Retry-After"]


def test_a_resent_huge_history_does_not_grow_the_database_each_time(server):
    """A client sends ~3.5 MB of history with the time in its system prompt, twice: the second
    request adds about what the model saw (its context), not the history again."""
    history = []
    for i in range(50):
        history += [{"role": "user", "content": f"Part {i}: " + "lorem ipsum dolor sit amet " * 2600},
                    {"role": "assistant", "content": f"Noted part {i}."}]
    database = Path(server.home) / "moss.db"

    def stored() -> int:
        with sqlite3.connect(database) as db:
            return db.execute("select coalesce(sum(length(content) + length(coalesce(prompt, ''))), 0) "
                              "from messages").fetchone()[0]

    sizes = [stored()]
    for minute in (1, 2):
        messages = [{"role": "system", "content": f"You are helpful. The time is 10:0{minute}."},
                    *history, {"role": "user", "content": "Summarize."}]
        body = {"model": "moss", "messages": messages, "max_tokens": 8}
        assert len(str(body)) > 3_000_000
        r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=300)
        assert r.status_code == 200, r.text
        sizes.append(stored())
    first, second = sizes[1] - sizes[0], sizes[2] - sizes[1]
    assert first < 400_000, f"the first request stored {first} characters"
    assert second < 60_000, f"resending the history stored {second} characters again"
