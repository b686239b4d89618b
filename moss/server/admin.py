"""The admin API: review feedback (accept, reject), start a learning cycle, list model
versions, roll back; and the server's housekeeping thread that follows the store's serving version and shares the cores with learning."""

import os
import subprocess
import sys
import threading
from collections import deque
from datetime import datetime
from typing import Any, Callable

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, field_validator

from moss import busy
from moss.inference.engine import Engine
from moss.learning import ledger, review, versions
from moss.learning.options import Options, rising
from moss.learning.versions import LearnError
from moss.server.api_types import Decision, FeedbackEntries, FeedbackEntry
from moss.server.errors import ApiError, found
from moss.store import Store, StoreError

DEFAULTS = Options()


class VersionOut(BaseModel):
    id: str
    base_model: str
    parent_id: str | None
    status: str  # serving | retired | failed
    created_at: datetime
    details: dict[str, Any]


class VersionList(BaseModel):
    object: str = "list"
    serving: str
    data: list[VersionOut]


class RollbackIn(BaseModel):
    version: str | None = None  # default: the serving version's parent


class LearnIn(BaseModel):
    min_items: int = DEFAULTS.min_items
    general_check: bool = DEFAULTS.general_check
    neighbour_check: bool = DEFAULTS.neighbour_check
    neighbour_margin: float = Field(DEFAULTS.neighbour_margin, ge=0, le=1)  # share of neighbours a version may change
    epochs: list[int] = list(DEFAULTS.epochs)  # candidate epochs (`moss learn --epochs`)

    @field_validator("epochs")
    @classmethod
    def _rising(cls, epochs: list[int]) -> list[int]:
        if not rising(epochs):
            raise ValueError("epochs must be rising whole numbers from 1, such as [2, 3, 4]")
        return epochs


class LearnStatus(BaseModel):
    running: bool
    exit_code: int | None = None  # 0: a version serves; 1: failed verification or nothing to learn
    started_at: datetime | None = None
    log: list[str] = []  # the last lines the cycle printed


class Learner:
    """Runs `moss learn` as a child process (a crash there cannot take the server down)."""

    def __init__(self, model: str):
        self.model = model  # a registry name or a path: what `moss learn --model` resolves to the served base
        self.process: subprocess.Popen | None = None
        self.started_at: datetime | None = None
        self.lines: deque[str] = deque(maxlen=200)
        self.lock = threading.Lock()

    def start(self, body: LearnIn) -> None:
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                raise ApiError(409, "a learning cycle is already running", code="learning_running")
            command = [sys.executable, "-m", "moss", "learn", "--model", self.model,
                       "--min-items", str(body.min_items), "--epochs", ",".join(map(str, body.epochs))]
            if not body.general_check:
                command.append("--no-general-check")
            command += ["--neighbour-check" if body.neighbour_check else "--no-neighbour-check",
                        "--neighbour-margin", str(body.neighbour_margin)]
            self.lines.clear()
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, text=True, env=os.environ.copy())
            self.started_at = datetime.now().astimezone()
            threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines.append(line.rstrip())

    def status(self) -> LearnStatus:
        running = self.process is not None and self.process.poll() is None
        code = None if self.process is None or running else self.process.returncode
        return LearnStatus(running=running, exit_code=code, started_at=self.started_at, log=list(self.lines)[-40:])


def router(engine: Engine, store: Store, caller: Callable, learner: Learner,
           decided: Callable[[], None] = lambda: None) -> APIRouter:
    """The admin routes; `decided` runs after an admin accepts or rejects feedback (the memory
    index follows at once)."""
    api = APIRouter(prefix="/v1/admin", tags=["admin"])

    def admin(who=Depends(caller)):
        if not who.admin:
            raise ApiError(403, "this needs an administrator's key (moss users add NAME --admin), "
                                "or, on a server without --auth, a request from this machine itself",
                           code="not_admin")
        return who

    @api.get("/versions", response_model=VersionList, summary="Model versions, oldest first")
    def list_versions(_who=Depends(admin)):
        rows = [VersionOut.model_validate(v, from_attributes=True) for v in store.all_versions()]
        return VersionList(serving=engine.version, data=rows)

    @api.post("/rollback", response_model=VersionOut, summary="Serve an earlier version now")
    def rollback(body: RollbackIn, _who=Depends(admin)):
        try:
            version = ledger.rollback(store, engine.model, body.version)
        except (StoreError, LearnError) as exc:
            raise ApiError(400, str(exc), param="version")
        versions.follow(engine, store)  # now, not at the next poll
        return VersionOut.model_validate(version, from_attributes=True)

    @api.get("/feedback", response_model=FeedbackEntries, summary="Feedback to review, newest first")
    def feedback(state: str = ",".join(review.ATTENTION), _who=Depends(admin)):
        try:
            states = review.states(state)
        except ValueError as exc:
            raise ApiError(400, f"state {exc}", param="state")
        return FeedbackEntries(data=review.entries(store, states))

    @api.post("/feedback/{feedback_id}/accept", response_model=FeedbackEntry,
              summary="Accept: the next cycle learns it, whatever the automatic checks said")
    def accept(feedback_id: int, who=Depends(admin)):
        entry = found(lambda: review.accept(store, feedback_id, who.user.name))
        decided()
        return entry

    @api.post("/feedback/{feedback_id}/reject", response_model=FeedbackEntry,
              summary="Reject, learned or not: never learned, and unlearned by the next cycle")
    def reject(feedback_id: int, body: Decision, who=Depends(admin)):
        entry = found(lambda: review.reject(store, feedback_id, who.user.name, body.reason))
        decided()
        return entry

    @api.post("/learn", response_model=LearnStatus, status_code=202,
              summary="Start a learning cycle on the feedback not yet learned")
    def learn(body: LearnIn, _who=Depends(admin)):
        learner.start(body)
        return learner.status()

    @api.get("/learn", response_model=LearnStatus, summary="The last learning cycle's progress")
    def learn_status(_who=Depends(admin)):
        return learner.status()

    return api


def housekeeping(engine: Engine, store: Store, stop: threading.Event, poll: float = 2.0) -> None:
    """Follow the serving version (a learning cycle or `moss rollback` changes it) and tell
    learning cycles when the server is answering."""
    serving, ticks = busy.Serving(), 0
    while not stop.wait(0.1):
        activity = engine.activity()
        if activity.active or activity.queued:
            if not serving.active:
                serving.started()
        elif serving.active:
            serving.ended()
        ticks += 1
        if ticks * 0.1 >= poll:
            ticks = 0
            try:
                versions.follow(engine, store)
            except Exception as exc:  # the database may be briefly unavailable: try again
                print(f"moss: version check failed: {exc}", file=sys.stderr)
    if serving.active:
        serving.ended()
