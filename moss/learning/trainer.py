"""LoRA training with torch + peft: SFT, DPO and KTO losses on assistant tokens only, CPU or GPU.

The model is the served GGUF itself, dequantized once by transformers and kept as safetensors,
so the adapter is trained on exactly the weights llama.cpp serves. Sequences are tokenized by the
caller with llama.cpp's tokenizer (the serving one). The loop runs under accelerate: on a GPU
machine `accelerate launch` (or a plain run with CUDA visible) uses the same code.

Two things make it fit a 2-core CPU (see ../shared/FINDINGS.md):
- every sequence in a batch starts with the same system prompt; that shared prefix goes through
  the model once per batch and its key/value cache is shared by all rows;
- logits (151,936 wide on Qwen) are computed only where a loss needs them."""

import inspect
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from moss import paths
from moss.learning.examples import Data, HyperParams, Labelled, Pair, Sequence

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ---- the base model as safetensors ----

def hf_dir(gguf: Path) -> Path:
    """Where the dequantized copy of a GGUF lives: made once, reused by every cycle of every data
    directory."""
    return paths.cache_dir() / "hf" / f"{gguf.stem}-{gguf.stat().st_size}"


def base_model(gguf: Path, dtype: torch.dtype, log: Callable[[str], None] = print):
    """The GGUF's weights as a transformers model, converted on first use (tens of seconds)."""
    from transformers import AutoModelForCausalLM
    target = hf_dir(gguf)
    if not (target / "config.json").exists():
        log(f"converting {gguf.name} for training (once)…")
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=dtype)
        # transformers marks a GGUF-loaded model as quantized and refuses to save or train it;
        # the weights are already plain tensors.
        model.hf_quantizer, model.is_quantized = None, False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # other processes may convert too
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        try:
            partial.rename(target)  # complete or absent, never half-written
        except OSError:  # another process finished first: its copy is the same
            shutil.rmtree(partial, ignore_errors=True)
        return model
    return AutoModelForCausalLM.from_pretrained(str(target), dtype=dtype)


# ---- batching with a shared prefix ----

def common_prefix(sequences: list[Sequence]) -> int:
    first, n = sequences[0].tokens, min(s.answer_from for s in sequences) - 1
    for s in sequences[1:]:
        k = 0
        while k < n and s.tokens[k] == first[k]:
            k += 1
        n = k
    return n


def by_length(lengths: list[int], waste: float = 1.5) -> list[list[int]]:
    """Indices of rows in groups of similar length: padding a group to its longest row costs
    at most `waste` times its real tokens."""
    groups: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        n = lengths[i]  # the longest so far: the group's padded width
        if groups and (len(groups[-1]) + 1) * n <= waste * (real + n):
            groups[-1].append(i)
            real += n
        else:
            groups.append([i])
            real = n
    return groups


def answer_logprobs(model, sequences: list[Sequence], device) -> list[torch.Tensor]:
    """Per sequence, the log-probability of each answer token under `model` (a peft model).
    The shared prefix (the system prompt) goes through once; the rows after it go through in
    groups of similar length: one long anchor answer padded a whole batch of short rows to its
    length (on cycle-2 data, 20,174 padded tokens per epoch for 8,798 real ones)."""
    from transformers import DynamicCache
    inner = model.get_base_model()
    shared = common_prefix(sequences)
    # transformers renamed past_key_values to cache (5.2x); accept both
    name = "cache" if "cache" in inspect.signature(type(inner.model).forward).parameters else "past_key_values"
    layers = []
    if shared > 0:
        prefix = torch.tensor([sequences[0].tokens[:shared]], device=device)
        layers = [(layer.keys, layer.values) for layer in getattr(inner.model(input_ids=prefix, use_cache=True), name).layers]
    out: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
    for group in by_length([len(s.tokens) - shared for s in sequences]):
        cache = DynamicCache([(k.repeat_interleave(len(group), 0), v.repeat_interleave(len(group), 0))
                              for k, v in layers]) if layers else None
        rows = _rest_logprobs(inner, [sequences[i] for i in group], shared, cache, name, device)
        for i, logprobs in zip(group, rows):
            out[i] = logprobs
    return out


def _rest_logprobs(inner, sequences: list[Sequence], shared: int, cache, name: str, device) -> list[torch.Tensor]:
    """answer_logprobs for one group after the prefix in `cache`: rows padded to the longest."""
    rest = [s.tokens[shared:] for s in sequences]
    width = max(len(r) for r in rest)
    ids = torch.zeros(len(rest), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(rest), shared + width, dtype=torch.long, device=device)
    mask[:, :shared] = 1
    for i, r in enumerate(rest):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, shared:shared + len(r)] = 1
    positions = torch.arange(shared, shared + width, device=device).expand(len(rest), -1)
    hidden = inner.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         **{name: cache}, use_cache=cache is not None).last_hidden_state
    # Row i predicts token i+1: the answer's tokens are predicted from answer_from-1 on.
    rows, cols, targets, sizes = [], [], [], []
    for i, s in enumerate(sequences):
        start, end = s.answer_from - 1 - shared, len(s.tokens) - 1 - shared
        rows += [i] * (end - start)
        cols += range(start, end)
        targets += s.tokens[s.answer_from:]
        sizes.append(end - start)
    logits = inner.lm_head(hidden[rows, cols]).float()
    picked = torch.log_softmax(logits, -1).gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
    return list(picked.split(sizes))


def _sft_loss(model, batch: list[Sequence], device) -> torch.Tensor:
    return -torch.cat(answer_logprobs(model, batch, device)).mean()


def answer_sums(model, sequences: list[Sequence], device) -> torch.Tensor:
    return torch.stack([lp.sum() for lp in answer_logprobs(model, sequences, device)])


def _fill_references(model, sequences: list[Sequence], size: int, device) -> None:
    """The reference model of DPO and KTO is the model as training starts (the parent version), or
    for a pair added between epochs, the model then: its log-probabilities never change, so they
    are computed once, not at every step."""
    sequences = [s for s in sequences if s.reference is None]
    with torch.no_grad():
        for k in range(0, len(sequences), size):
            chunk = sequences[k:k + size]
            for sequence, value in zip(chunk, answer_sums(model, chunk, device).tolist()):
                sequence.reference = value


def _reference(sequences: list[Sequence], device) -> torch.Tensor:
    return torch.tensor([s.reference for s in sequences], device=device)


def _dpo_loss(model, batch: list[Pair], beta: float, device) -> torch.Tensor:
    seqs = [p.chosen for p in batch] + [p.rejected for p in batch]
    ratio = answer_sums(model, seqs, device) - _reference(seqs, device)
    chosen, rejected = ratio[:len(batch)], ratio[len(batch):]
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


def _kto_loss(model, batch: list[Labelled], beta: float, device) -> torch.Tensor:
    sequences = [b.sequence for b in batch]
    ratio = answer_sums(model, sequences, device) - _reference(sequences, device)
    # KTO's reference point: the batch's KL estimate, not differentiated, never negative.
    z0 = ratio.detach().mean().clamp(min=0)
    good = torch.tensor([b.good for b in batch], device=device)
    value = torch.where(good, torch.sigmoid(beta * (ratio - z0)), torch.sigmoid(beta * (z0 - ratio)))
    return (1 - value).mean()


# ---- the loop ----

@dataclass
class Checkpoint:
    epoch: int
    loss: float
    state: dict[str, torch.Tensor]  # the adapter's weights (peft names), on the CPU


def _batches(data: Data, hp: HyperParams, generator: torch.Generator) -> list[tuple[str, list]]:
    """One epoch's batches in random order; each SFT batch carries a few anchors (round robin)."""
    out = []
    kinds = (("sft", data.sft, hp.batch_size), ("dpo", data.dpo, max(1, hp.batch_size // 2)),
             ("kto", data.kto, hp.batch_size))
    batches = sum(math.ceil(len(items) / n) for _, items, n in kinds)
    repeat = math.ceil(hp.min_batches / batches) if batches else 1
    for kind, items, n in kinds:
        items = items * repeat
        order = torch.randperm(len(items), generator=generator).tolist()
        out += [(kind, [items[i] for i in order[k:k + n]]) for k in range(0, len(items), n)]
    anchors = [data.anchors[i] for i in torch.randperm(len(data.anchors), generator=generator).tolist()]
    near = [data.near[i] for i in torch.randperm(len(data.near), generator=generator).tolist()]
    if (anchors or near) and not data.sft:
        rows = anchors + near
        out += [("sft", rows[k:k + hp.batch_size]) for k in range(0, len(rows), hp.batch_size)]
    else:
        for rows, each in ((anchors, hp.anchors_per_batch), (near, hp.near_per_batch)):
            _ride_along([batch for kind, batch in out if kind == "sft"], rows, each)
    order = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in order]


def _ride_along(batches: list[list], rows: list, each: int) -> None:
    """Add `each` of `rows` to every batch, in turn (round robin)."""
    if not rows:
        return
    for turn, batch in enumerate(batches):
        batch += [rows[(turn * each + j) % len(rows)] for j in range(each)]


def total_steps(data: Data, hp: HyperParams) -> int:
    return hp.epochs * len(_batches(data, hp, torch.Generator()))


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file
    partial = path.with_name(path.name + ".partial")
    save_file(state, str(partial))
    partial.replace(path)


def load_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(path))


def train(gguf: Path, data: Data, hp: HyperParams, progress: Callable[[int, int, float], None],
          threads: int | None = None, checkpoint_epochs: set[int] | None = None,
          start: dict[str, torch.Tensor] | None = None, cpu: bool = False,
          enough: Callable[[Checkpoint, dict], bool] | None = None) -> tuple[list[Checkpoint], dict]:
    """Train a LoRA on `data` (continuing from the weights `start`, when given); returns the
    adapter after each epoch in `checkpoint_epochs` (default: the last) and the model facts the
    exporter needs. `enough(checkpoint, facts)`, asked at each of those epochs, ends training early;
    it may add DPO pairs to `data` for the epochs left."""
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(hp.seed)
    if threads:
        torch.set_num_threads(threads)
    accelerator = Accelerator(cpu=cpu or not torch.cuda.is_available())
    dtype = torch.bfloat16  # bf16 weights: 2x faster than fp32 on CPUs with AVX512-BF16
    model = base_model(gguf, dtype)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=hp.rank, lora_alpha=hp.alpha, lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    if start is not None:
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(model, {k.replace(".default", ""): v for k, v in start.items()})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=hp.learning_rate, weight_decay=0.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    device = accelerator.device
    generator = torch.Generator().manual_seed(hp.seed)
    total = len(_batches(data, hp, torch.Generator())) * hp.epochs  # grows if `enough` adds data
    schedule = torch.optim.lr_scheduler.LambdaLR(  # short warm-up, then cosine down to 10%
        optimizer, lambda k: min(1.0, (k + 1) / 3) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(k / total, 1)))))
    wanted = checkpoint_epochs or {hp.epochs}
    config = accelerator.unwrap_model(model).get_base_model().config
    facts = {"architecture": config.model_type, "heads": config.num_attention_heads,
             "kv_heads": config.num_key_value_heads, "rank": hp.rank, "alpha": hp.alpha}
    checkpoints, step = [], 0
    model.train()
    for epoch in range(1, hp.epochs + 1):
        _fill_references(model, [s for p in data.dpo for s in (p.chosen, p.rejected)] +
                         [k.sequence for k in data.kto], hp.batch_size, device)
        batches = _batches(data, hp, generator)
        total = step + len(batches) * (hp.epochs - epoch + 1)
        losses = []
        for kind, batch in batches:
            if kind == "sft":
                loss = _sft_loss(model, batch, device)
            elif kind == "dpo":
                loss = _dpo_loss(model, batch, hp.beta, device)
            else:
                loss = _kto_loss(model, batch, hp.beta, device)
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            progress(step, total, sum(losses) / len(losses))
        if epoch in wanted:
            state = {k: v.detach().float().cpu().clone() for k, v in
                     accelerator.unwrap_model(model).state_dict().items() if "lora_" in k}
            checkpoints.append(Checkpoint(epoch, sum(losses) / len(losses), state))
            if enough is not None and enough(checkpoints[-1], facts):
                break
    return checkpoints, facts


