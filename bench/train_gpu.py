"""The trainer's accelerate path on a GPU: the same `moss.learning.trainer.train` call on CPU and on CUDA.

Uses a small randomly initialised Qwen2-shaped model written where the trainer looks for a
converted GGUF (no download), trains the same data on both devices and prints one comparison per
line: seconds per step, the losses (they must agree closely), and that the adapter GGUF is written.

    python bench/train_gpu.py"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("MOSS_HOME", tempfile.mkdtemp(prefix="moss-gpu-"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moss.learning import adapters, trainer  # noqa: E402


def tiny_model(gguf: Path) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM
    gguf.write_bytes(b"GGUF placeholder")  # only its name and size are used to find the copy
    config = Qwen2Config(vocab_size=4096, hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=False)
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(trainer.hf_dir(gguf))


def data() -> trainer.Data:
    g = torch.Generator().manual_seed(1)
    system = torch.randint(0, 4096, (60,), generator=g).tolist()
    sft = []
    for _ in range(32):
        q = torch.randint(0, 4096, (12,), generator=g).tolist()
        a = torch.randint(0, 4096, (24,), generator=g).tolist()
        sft.append(trainer.Sequence(system + q + a, len(system) + len(q)))
    pairs = [trainer.Pair(sft[i], sft[i + 1]) for i in range(0, 8, 2)]
    return trainer.Data(sft=sft, dpo=pairs)


def run(device: str, gguf: Path) -> tuple[float, list[float], dict]:
    losses: list[float] = []
    start = time.perf_counter()
    checkpoints, facts = trainer.train(gguf, data(), trainer.HyperParams(epochs=3, learning_rate=5e-4),
                                       lambda step, total, loss: losses.append(loss), cpu=device == "cpu")
    seconds = (time.perf_counter() - start) / len(losses)
    return seconds, losses, {"state": checkpoints[-1].state, "facts": facts}


def child(device: str) -> None:
    """One device per process: accelerate's state is fixed once made."""
    gguf = Path(os.environ["MOSS_HOME"]) / "tiny.gguf"
    seconds, losses, trained = run(device, gguf)
    adapter = adapters.write(trained["state"], trained["facts"], Path(os.environ["MOSS_HOME"]) / f"{device}.gguf")
    print(json.dumps({"seconds": seconds, "losses": losses, "adapter_bytes": adapter.stat().st_size}))


def main() -> None:
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}", flush=True)
    tiny_model(Path(os.environ["MOSS_HOME"]) / "tiny.gguf")
    results = {}
    for device in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]:
        done = subprocess.run([sys.executable, __file__, device], capture_output=True, text=True, check=True)
        results[device] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[device]
        print(f"{device}: {r['seconds']:.3f} s/step, final running loss {r['losses'][-1]:.4f}, "
              f"adapter GGUF {r['adapter_bytes']:,} bytes", flush=True)
    if "cuda" in results:
        cpu, gpu = results["cpu"], results["cuda"]
        print(f"seconds per step, cuda vs cpu: {gpu['seconds']:.3f} vs {cpu['seconds']:.3f} -> "
              f"{cpu['seconds'] / gpu['seconds']:.1f}x faster")
        worst = max(abs(a - b) for a, b in zip(cpu["losses"], gpu["losses"]))
        print(f"running loss, cuda vs cpu: largest difference {worst:.4f} over {len(cpu['losses'])} steps")


if __name__ == "__main__":
    child(sys.argv[1]) if len(sys.argv) > 1 else main()
