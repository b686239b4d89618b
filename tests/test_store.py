"""The store on SQLite and on a real PostgreSQL server: users, keys, conversations, isolation."""

import uuid

import pytest
from sqlalchemy import text

from moss.store import Answer, Store, StoreError


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'moss.db'}")
    else:
        base = request.getfixturevalue("postgres_url")
        s = Store(base)
        with s.engine.begin() as conn:  # each test starts from empty tables
            conn.execute(text("TRUNCATE users, api_keys, conversations, messages, feedback, feedback_events, "
                              "model_versions CASCADE"))
    s.register_version("m@base", "m", "/models/m.gguf")
    yield s
    s.close()


def answer(content: str, **overrides) -> Answer:
    fields = dict(content=content, model_version_id="m@base", prompt=[{"role": "user", "content": "q"}],
                  sampling={"temperature": 0}, prompt_tokens=10, completion_tokens=5, cached_tokens=0,
                  finish_reason="stop", latency_ms=100, ttft_ms=20)
    return Answer(**{**fields, **overrides})


def test_users_and_keys(store):
    user, key = store.add_user("alice", rate_limit=5, daily_tokens=1000)
    assert key.startswith("moss-") and len(key) > 30
    assert store.user_for_key(key).name == "alice"
    assert store.user_for_key(key + "x") is None
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("alice")
    second = store.new_key("alice")
    assert store.user_for_key(second).id == user.id
    assert [(u.name, n) for u, n in store.users()] == [("alice", 2)]
    store.set_disabled("alice")
    assert store.user_for_key(key) is None
    with pytest.raises(StoreError, match="no user named"):
        store.set_disabled("bob")
    # Only a hash is stored: the key itself appears nowhere in the database.
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT key_hash, prefix FROM api_keys")).all()
    assert all(key not in " ".join(r) for r in rows)


def test_resent_history_continues_the_conversation_and_edits_branch(store):
    user, _ = store.add_user("alice")
    first = store.record(user.id, [{"role": "user", "content": "Hi"}], [answer("Hello!")])
    turn2 = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "How are you?"}]
    second = store.record(user.id, turn2, [answer("Fine.")])
    assert second.conversation_id == first.conversation_id
    assert len(second.message_ids) == 2  # only the new question and its answer were added
    edited = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "What time is it?"}]
    third = store.record(user.id, edited, [answer("Noon.")])
    assert third.conversation_id == first.conversation_id
    conversation, messages = store.conversation(user.id, first.conversation_id)
    assert conversation.title == "Hi"
    by_id = {m.id: m for m in messages}
    hello = by_id[first.message_ids[1]]
    branches = [m for m in messages if m.parent_id == hello.id]
    assert sorted(m.content for m in branches) == ["How are you?", "What time is it?"]
    noon = by_id[third.message_ids[1]]
    assert noon.prompt == [{"role": "user", "content": "q"}] and noon.model_version_id == "m@base"
    assert noon.sampling == {"temperature": 0} and noon.finish_reason == "stop"


def test_users_see_only_their_own(store):
    alice, _ = store.add_user("alice")
    bob, _ = store.add_user("bob")
    rec = store.record(alice.id, [{"role": "user", "content": "secret plan"}], [answer("ok")])
    assert [c.id for c in store.conversations(alice.id)] == [rec.conversation_id]
    assert store.conversations(bob.id) == []
    for call in (lambda: store.conversation(bob.id, rec.conversation_id),
                 lambda: store.rename(bob.id, rec.conversation_id, "mine"),
                 lambda: store.delete(bob.id, rec.conversation_id),
                 lambda: store.message(bob.id, rec.message_ids[0])):
        with pytest.raises(LookupError):
            call()
    # Bob sending the same words starts his own conversation.
    assert store.record(bob.id, [{"role": "user", "content": "secret plan"}], []).conversation_id \
        != rec.conversation_id


def test_list_search_rename_delete(store):
    user, _ = store.add_user("alice")
    a = store.record(user.id, [{"role": "user", "content": "Tell me about whales"}], [answer("Big.")])
    b = store.record(user.id, [{"role": "user", "content": "Recipe for bread"}], [answer("Flour.")])
    assert [c.id for c in store.conversations(user.id)] == [b.conversation_id, a.conversation_id]
    assert [c.id for c in store.conversations(user.id, "WHALES")] == [a.conversation_id]
    assert [c.id for c in store.conversations(user.id, "flour")] == [b.conversation_id]
    assert store.rename(user.id, a.conversation_id, "Whales 🐋").title == "Whales 🐋"
    store.delete(user.id, a.conversation_id)
    assert [c.id for c in store.conversations(user.id)] == [b.conversation_id]
    with store.engine.connect() as conn:  # its messages went with it
        assert conn.execute(text("SELECT count(*) FROM messages WHERE conversation_id = :c"),
                            {"c": a.conversation_id}).scalar() == 0


def test_tokens_today_counts_prompt_and_completion(store):
    user, _ = store.add_user("alice")
    store.record(user.id, [{"role": "user", "content": "a"}], [answer("x", prompt_tokens=7, completion_tokens=3)])
    store.record(user.id, [{"role": "user", "content": "b"}], [answer("y", prompt_tokens=1, completion_tokens=1)])
    assert store.tokens_today(user.id) == 12


def test_unknown_conversation_id_is_a_lookup_error(store):
    user, _ = store.add_user("alice")
    with pytest.raises(LookupError):
        store.record(user.id, [{"role": "user", "content": "a"}], [], conversation_id=uuid.uuid4().hex)


def test_migrations_are_idempotent(store):
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0007"  # the newest


def test_corrections_stored_before_memories_existed_become_memories(store):
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    import moss.store.database as database
    user, _ = store.add_user("ann")
    recorded = store.record(user.id, [{"role": "user", "content": "Who founded the Quorvane Library?"}], [answer("?")])
    store.set_feedback(user.id, recorded.message_ids[-1], "correction", {"content": "Ann Marrow did."})
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(database.__file__).parent / "migrations"))
    with store.engine.begin() as conn:  # back to the schema before memories, keeping the rows
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    store.migrate()
    assert [(r.memory.question, r.memory.answer, r.memory.lang, r.state) for r in store.memories()] == [
        ("Who founded the Quorvane Library?", "Ann Marrow did.", "en", "pending")]
