"""Hostile model directories (issue #8, item 9): a damaged safetensors file, pickle-only weights, a
chat template that tries to leave the Jinja sandbox, a garbage or unknown config.json. None may run
code; each is one ModelResolutionError naming the model and the reason (exit 2 from the CLI)."""
from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from emovec.cli.main import cli
from emovec_store.engine.load import load, pickle_weights_allowed
from emovec_store.engine.resolve import resolve
from emovec_store.errors import ModelResolutionError
from tests.tiny_models import build_model

TINY_CORPUS = Path(__file__).parent / "fixtures" / "emovec_tiny"


@pytest.fixture(scope="module")
def good_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model("llama", tmp_path_factory.mktemp("models") / "good", layers=2)


class _Planted:
    """Unpickling this touches a file: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., None], tuple[pathlib.Path]]:
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def _variant(good: Path, dest: Path, change: Callable[[Path], None]) -> Path:
    shutil.copytree(good, dest)
    change(dest)
    return dest


def _to_pickle(d: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(d / "model.safetensors"), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()


def _config(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        config = json.loads((d / "config.json").read_text())
        change(config)
        (d / "config.json").write_text(json.dumps(config))
    return edit


def _template(text: str) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        (d / "chat_template.jinja").write_text(text)
    return edit


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage-safetensors": (lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 64),
                            "SafetensorError: Error while deserializing header"),
    "truncated-safetensors": (lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:400]), "SafetensorError"),
    "pickle-only": (_to_pickle, "its weights (pytorch_model.bin) are Python pickles"),
    "garbage-config": (lambda d: (d / "config.json").write_text("{{{ not json"), "is not a valid JSON file"),
    "list-config": (lambda d: (d / "config.json").write_text("[1, 2]"), "TypeError"),
    "unknown-architecture": (_config(lambda c: c.update(model_type="florp", architectures=["FlorpForCausalLM"])),
                             "model type `florp`"),
    "sandbox-escape": (_template("{{ ''.__class__.__mro__[1].__subclasses__() }}"),
                       "its chat template tries to leave the Jinja sandbox (SecurityError"),
    "broken-template": (_template("{% for m in messages %}{{ m['content'] }"), "its chat template does not render"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_model_directory_is_one_error(good_model: Path, tmp_path: Path, case: str) -> None:
    change, reason = HOSTILE[case]
    model = _variant(good_model, tmp_path / case, change)
    with pytest.raises(ModelResolutionError) as exc:
        load(resolve(str(model)), device="cpu", compute_dtype="float32")
    message = str(exc.value)
    assert message.startswith(f"model {str(model)!r}: "), message
    assert reason in message and "\n" not in message and "\x1b" not in message, message
    assert exc.value.exit_code == 2


def test_the_cli_names_the_model_and_writes_no_store(good_model: Path, tmp_path: Path) -> None:
    model = _variant(good_model, tmp_path / "m", HOSTILE["garbage-safetensors"][0])
    store = tmp_path / "s.zarr"
    r = CliRunner().invoke(cli, ["extract", "--model", str(model), "--corpus", str(TINY_CORPUS), "--store", str(store),
                                 "--device", "cpu", "--no-progress"])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().startswith(f"Error: model {str(model)!r}: cannot load it") and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1 and not store.exists()


def test_a_planted_pickle_never_runs(good_model: Path, tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "code-ran"
    model = _variant(good_model, tmp_path / "evil", _to_pickle)
    torch.save({"model.embed_tokens.weight": _Planted(marker)}, model / "pytorch_model.bin")
    with pytest.raises(ModelResolutionError, match="are Python pickles"):
        load(resolve(str(model)), device="cpu", compute_dtype="float32")
    # allowed, it is read by the weights-only unpickler, which refuses the planted object
    with pytest.raises(ModelResolutionError, match=r"cannot load it from .*UnpicklingError: Weights only load failed"):
        load(resolve(str(model)), device="cpu", compute_dtype="float32", allow_pickle=True)
    assert not marker.exists()


def test_honest_pickle_weights_load_only_when_allowed(good_model: Path, tmp_path: Path) -> None:
    model = _variant(good_model, tmp_path / "bin", _to_pickle)
    args = ["extract", "--model", str(model), "--corpus", str(TINY_CORPUS), "--device", "cpu", "--no-progress",
            "--limit", "2"]
    r = CliRunner().invoke(cli, [*args, "--store", str(tmp_path / "a.zarr")])
    assert r.exit_code == 2 and "--allow-pickle" in r.stderr and not (tmp_path / "a.zarr").exists()
    with pickle_weights_allowed():
        loaded = load(resolve(str(model)), device="cpu", compute_dtype="float32")
    reference = load(resolve(str(good_model)), device="cpu", compute_dtype="float32")
    assert loaded.model.state_dict().keys() == reference.model.state_dict().keys()
    assert all((loaded.model.state_dict()[k] == v).all() for k, v in reference.model.state_dict().items())
    r = CliRunner().invoke(cli, [*args, "--allow-pickle", "--store", str(tmp_path / "b.zarr")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b.zarr" / "zarr.json").is_file()


def test_a_template_escape_runs_no_code(good_model: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    escape = ("{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
              "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__ }}")
    model = _variant(good_model, tmp_path / "jinja", _template(escape))
    with pytest.raises(ModelResolutionError, match="chat template"):
        load(resolve(str(model)), device="cpu", compute_dtype="float32")
    assert not marker.exists()


def test_remote_code_stays_off(good_model: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"

    def plant(d: Path) -> None:
        (d / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
        _config(lambda c: c.update(auto_map={"AutoConfig": "evil.EvilConfig",
                                             "AutoModelForCausalLM": "evil.EvilModel"}))(d)
    model = _variant(good_model, tmp_path / "remote", plant)
    loaded = load(resolve(str(model)), device="cpu", compute_dtype="float32")
    assert type(loaded.model).__name__ == "LlamaForCausalLM" and loaded.provenance["trust_remote_code"] is False
    assert not marker.exists()


def test_a_tokenizer_with_custom_code_is_refused_without_asking(good_model: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from emovec_store.engine.load import load_tokenizer

    marker = tmp_path / "code-ran"

    def plant(d: Path) -> None:
        (d / "evil_tok.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
        config = json.loads((d / "tokenizer_config.json").read_text())
        config.update(tokenizer_class="EvilTok", auto_map={"AutoTokenizer": [None, "evil_tok.EvilTok"]})
        (d / "tokenizer_config.json").write_text(json.dumps(config))
    model = _variant(good_model, tmp_path / "tok", plant)
    with pytest.raises(ModelResolutionError, match="contains custom code") as exc:
        load_tokenizer(model)
    assert "\n" not in str(exc.value) and not marker.exists()
    assert "Do you wish to run the custom code" not in capsys.readouterr().out  # never asked interactively
