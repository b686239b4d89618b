"""Trained LoRA weights written as a llama.cpp LoRA adapter GGUF, the file the engine serves."""

from pathlib import Path

import numpy as np
import torch

# peft module name -> llama.cpp tensor name (see llama.cpp's convert_lora_to_gguf.py)
NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
         "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
         "mlp.down_proj": "ffn_down"}


def permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp stores llama-architecture q/k rows interleaved by rotary halves; HF does not."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def gguf_name(peft_name: str) -> str:
    """'base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight' -> 'blk.3.attn_q.weight.lora_a'."""
    parts = peft_name.split(".")
    at = parts.index("layers")
    layer, module = parts[at + 1], ".".join(parts[at + 2:at + 4])
    if module not in NAMES:
        raise ValueError(f"no llama.cpp name for LoRA module {peft_name}")
    side = "lora_a" if "lora_A" in parts else "lora_b"
    return f"blk.{layer}.{NAMES[module]}.weight.{side}"


def write(state: dict[str, torch.Tensor], facts: dict, path: Path) -> Path:
    """Write an adapter GGUF (to a temporary name first, so a crash leaves no partial file)."""
    import gguf
    arch = {"qwen2": "qwen2", "llama": "llama"}.get(facts["architecture"], facts["architecture"])
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(facts["alpha"]))
    for name in sorted(state):
        weight = state[name].float().numpy()
        target = gguf_name(name)
        if arch == "llama" and target.endswith("lora_b") and (".attn_q." in target or ".attn_k." in target):
            weight = permute(weight, facts["heads"] if ".attn_q." in target else facts["kv_heads"])
        # numpy [r, in] is GGUF ne=[in, r] (lora_a); [out, r] is ne=[r, out] (lora_b): as llama.cpp wants
        writer.add_tensor(target, np.ascontiguousarray(weight, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)
    return path
