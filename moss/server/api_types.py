"""Request and response models of Moss's HTTP API: OpenAI's shapes, plus conversations."""

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from moss.learning.review import Entry as FeedbackEntry  # one type for the page, the API and the CLI


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule; it also keeps names out of the prompt's markup


class FunctionCall(BaseModel):
    name: str = Field(pattern=FUNCTION_NAME)
    arguments: str = Field("{}", max_length=100_000)  # a JSON object as text


class ToolCall(BaseModel):
    """A call the assistant made (in an answer, or sent back in the history)."""
    model_config = ConfigDict(extra="ignore")
    id: str = Field(max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=64)  # an assistant's calls
    tool_call_id: str | None = Field(None, max_length=200)  # the call a tool message answers


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=FUNCTION_NAME)
    description: str = Field("", max_length=10_000)
    parameters: dict[str, Any] | None = None  # a JSON schema of the arguments
    strict: bool | None = None  # arguments always match the schema here: a grammar holds them to it


class ToolDef(BaseModel):
    type: Literal["function"]
    function: FunctionDef


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat completion request. Unknown fields are ignored, as OpenAI does."""
    model_config = ConfigDict(extra="ignore")
    model: str = Field(max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1000)  # llama.cpp extension
    repeat_penalty: float | None = Field(None, gt=0, le=5)  # llama.cpp extension
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    user: str | None = Field(None, max_length=256)
    conversation_id: str | None = Field(None, max_length=64,
                                        description="Moss: continue this stored conversation")
    memories: bool = Field(True, description="Moss: use what people taught (memories not yet learned)")
    builtin_tools: list[Literal["calculator", "solver", "python", "knowledge_search"]] = Field(
        [], max_length=8, description="Moss: tools Moss runs itself while answering, e.g. [\"calculator\", \"solver\"]")
    # Named so that a request that needs them is refused with a clear 400 (app._unsupported), not
    # answered as if they had not been sent: an agent given plain text fails in confusing ways.
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()


class MemoryUsed(BaseModel):
    """A memory put into the prompt: something a person taught, not yet learned by the model."""
    id: int
    question: str
    answer: str
    scope: Literal["you", "everyone", "learned", "gone"]  # whom it reaches now (see MemoryOut)


class ToolRun(BaseModel):
    """A call one of Moss's own tools ran for an answer (builtin_tools), and what it returned."""
    name: str
    arguments: str  # JSON text, as the model wrote it
    result: str
    ok: bool


class MossInfo(BaseModel):
    """Where Moss stored the exchange (use the ids to send feedback on an answer), the memories
    the answer used, and the calls Moss's own tools ran for it (the first choice's)."""
    conversation_id: str
    message_ids: list[str]  # the answers' ids, one per choice
    memories: list[MemoryUsed] = []
    tool_runs: list[ToolRun] = []


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    moss: MossInfo | None = None


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str = ""


class ToolCallDelta(BaseModel):
    """A piece of a streamed call: the first names it (id, type, name), the next add arguments."""
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    moss: MossInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "moss"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ConversationSummary(BaseModel):
    id: str
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationSummary]


Reason = Literal["incorrect", "unhelpful", "unsafe", "wrong_language", "too_long"]


class RatingIn(BaseModel):
    kind: Literal["rating"]
    rating: Literal["up", "down"]
    reasons: list[Reason] = Field(default_factory=list, max_length=5)
    comment: str = Field("", max_length=4000)


class CorrectionIn(BaseModel):
    """A better answer written by the person: stored as the preferred answer."""
    kind: Literal["correction"]
    content: str = Field(min_length=1, max_length=100_000)


class ComparisonIn(BaseModel):
    """This answer against another answer to the same question (another sample or version)."""
    kind: Literal["comparison"]
    other_message_id: str = Field(max_length=64)
    choice: Literal["this", "other", "tie", "both_bad"]


class FlagIn(BaseModel):
    kind: Literal["flag"]
    reason: str = Field("", max_length=4000)


FeedbackIn = Annotated[Union[RatingIn, CorrectionIn, ComparisonIn, FlagIn], Field(discriminator="kind")]


class FeedbackOut(BaseModel):
    id: int
    message_id: str
    kind: str
    value: dict[str, Any]
    # pending -> accepted / held (for an admin's review) / rejected -> learned (-> unlearned), or
    # parked (not learned in repeated cycles); `reason` says why, for the person who gave it.
    state: str
    reason: str
    learned_in: str | None = None  # the model version that learned it
    unlearned_in: str | None = None  # the version that removed it again
    created_at: datetime
    updated_at: datetime
    memory: "MemoryOut | None" = None  # a correction's: what Moss remembers at once, and for whom


class MemoryOut(BaseModel):
    """What a correction taught, and whom it reaches: "you" (its author, until accepted),
    "everyone", "learned" (the serving model learned it: no longer retrieved), "gone" (rejected)."""
    id: int
    question: str
    answer: str
    lang: str
    scope: Literal["you", "everyone", "learned", "gone"]
    state: str  # its feedback's state
    reason: str
    learned_in: str | None = None
    author: str
    feedback_id: int
    created_at: datetime


class MemoryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[MemoryOut]


class MemoryDeleted(BaseModel):
    id: int
    object: Literal["memory.deleted"] = "memory.deleted"
    deleted: bool = True


class FeedbackEntries(BaseModel):
    """Feedback with what it judged: for its author (GET /v1/feedback) and for an admin's review
    (GET /v1/admin/feedback), with the base model's and the teacher's answers."""
    object: Literal["list"] = "list"
    data: list[FeedbackEntry]


class Decision(BaseModel):
    reason: str = Field("", max_length=2000, description="Why (a rejection's reason is shown to its author)")


class FeedbackList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FeedbackOut]


class FeedbackWithdrawn(BaseModel):
    message_id: str
    kind: str
    object: Literal["feedback.deleted"] = "feedback.deleted"
    deleted: bool = True


class StoredMessage(BaseModel):
    id: str
    parent_id: str | None
    role: str
    content: str
    model_version_id: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    created_at: datetime
    feedback: list[FeedbackOut] = []  # the caller's own judgments of this message
    memories: list[MemoryUsed] = []  # what people taught that its prompt held
    tool_runs: list[ToolRun] | None = None  # the calls Moss's own tools ran for it


class ConversationDetail(ConversationSummary):
    messages: list[StoredMessage]  # every branch; rebuild the tree from parent_id


class ConversationRename(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class ConversationCreate(BaseModel):
    title: str = Field("", max_length=200)


class Deleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"] = "conversation.deleted"
    deleted: bool = True


class SessionIn(BaseModel):
    key: str = Field(min_length=1, max_length=200, description="An API key (moss users add NAME)")


class SessionOut(BaseModel):
    user: str | None  # None once signed out
    auth: bool  # whether this server asks for keys
    admin: bool = False  # may review feedback (the page shows its review view)


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    version: str  # the model version answering now (the base, or a trained version)
    queued: int
    active: int
