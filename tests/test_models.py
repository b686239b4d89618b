"""Model registry: resolving references, assembling from wheel parts, surviving interruption and corruption."""

import hashlib
import importlib
import os
import subprocess
import sys
import textwrap

import pytest

from moss.inference import models
from moss.inference.models import ModelError, ModelSpec


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A registry entry whose three parts are installed as packages, like the real model wheels."""
    monkeypatch.setenv("MOSS_HOME", str(tmp_path / "home"))
    site = tmp_path / "site"
    blobs = [os.urandom(3 << 20), os.urandom(2 << 20), os.urandom(1 << 20)]
    blobs[0] = b"GGUF" + blobs[0][4:]
    for i, blob in enumerate(blobs, 1):
        pkg = site / f"fakepart{i}" / "data"
        pkg.mkdir(parents=True)
        (pkg.parent / "__init__.py").write_text("")
        (pkg / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    whole = b"".join(blobs)
    spec = ModelSpec("fake-model", "Fake", "en", len(whole), hashlib.sha256(whole).hexdigest(),
                     tuple((f"fakepart{i}", f"data/part{i:02d}.bin") for i in range(1, 4)),
                     "pip install fakepart")
    return spec, whole, site


def test_unknown_name_lists_the_choices():
    with pytest.raises(ModelError, match="unknown model 'nope'.*qwen2.5-coder-0.5b-instruct"):
        models.resolve("nope")


def test_local_paths_are_checked(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        models.resolve(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a GGUF model file"):
        models.resolve(str(bad))
    good = tmp_path / "good.gguf"
    good.write_bytes(b"GGUF" + bytes(16))
    assert models.resolve(str(good)) == good.resolve()


def test_hf_reference_offline_is_one_clear_error():
    with pytest.raises(ModelError, match="hf:"):
        models.resolve("hf:someone/some-repo/model.gguf")
    with pytest.raises(ModelError, match="expected hf:OWNER/REPO/FILE.gguf"):
        models.resolve("hf:just-a-name")


def test_assembles_once_and_verifies(fake_model):
    spec, whole, _ = fake_model
    assert models.status(spec).state == "installed; assembled on first use"
    path = models.ensure(spec)
    assert path.read_bytes() == whole
    assert models.status(spec).state == "ready"
    mtime = path.stat().st_mtime_ns
    assert models.ensure(spec) == path and path.stat().st_mtime_ns == mtime  # not assembled twice


def test_corrupt_file_is_detected_and_rebuilt(fake_model, capsys):
    spec, whole, _ = fake_model
    path = models.ensure(spec)
    with path.open("r+b") as f:
        f.seek(1000)
        f.write(b"\xff\x00\xff")
    assert models.ensure(spec).read_bytes() == whole
    assert "corrupt" in capsys.readouterr().err


def test_corruption_with_unchanged_mtime_is_caught_by_verify(fake_model):
    spec, whole, _ = fake_model
    path = models.ensure(spec)
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(2000)
        f.write(b"\x00\x01\x02")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert models.ensure(spec, verify=True).read_bytes() == whole


def test_parts_that_do_not_add_up_are_refused(fake_model):
    spec, _, site = fake_model
    (site / "fakepart2" / "data" / "part02.bin").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="do not add up"):
        models.ensure(spec)
    assert not models.target_path(spec).exists()
    assert not models.target_path(spec).with_suffix(".gguf.partial").exists()


def test_missing_package_says_what_to_install(fake_model):
    spec, _, _ = fake_model
    missing = ModelSpec(**{**spec.__dict__, "parts": spec.parts + (("nosuchpart9", "x.bin"),)})
    with pytest.raises(ModelError, match="not installed: pip install fakepart"):
        models.ensure(missing)


def test_kill_during_assembly_then_recover(fake_model):
    """kill -9 in the middle of writing: no final file appears; the next run rebuilds it."""
    spec, whole, site = fake_model
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(site)!r})
        from contextlib import contextmanager
        from moss.inference import models
        @contextmanager
        def dying_track(label, total, unit="bytes"):
            class T:
                def advance(self, n):  # dies after the first block is written
                    os.kill(os.getpid(), signal.SIGKILL)
            yield T()
        models.track = dying_track
        models.CHUNK = 1 << 20
        models.ensure(models.ModelSpec(*{tuple(spec.__dict__.values())!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=os.environ.copy())
    assert proc.returncode == -9
    path = models.target_path(spec)
    assert not path.exists() and path.with_suffix(".gguf.partial").exists()
    assert models.ensure(spec).read_bytes() == whole
    assert not path.with_suffix(".gguf.partial").exists()


def test_moss_home_overrides_the_data_directory(moss_home):
    assert str(models.paths.home()) == moss_home
    assert str(models.target_path(models.REGISTRY[models.DEFAULT])).startswith(moss_home)
