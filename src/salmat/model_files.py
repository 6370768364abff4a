"""`salmat models pull NAME` (`salmat.pull_model`): download a known model's file, check its sha256,
install it atomically.

The download and the checksum are pooch's (its HTTP downloader and `file_hash`); the file is
written to a temporary file of its own beside its destination (`outputs.AtomicFile`) and
linked into place only once its sha256 is the published one, never over a file: a mismatch, a
server error or an interrupted download leaves nothing behind, and an earlier file at the
destination is never overwritten, even one that appears during the download. A concurrent pull
of the same model that installed first is found there, checked, and kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .command_options import ModelsPullOptions
from .errors import SalmatError
from .models.classical import BUILTIN_MODELS
from .models.registry import (
    ENV_VAR,
    KNOWN_MODELS,
    SHA_DIGITS,
    KnownModel,
    file_sha256,
    known_model,
    search_dirs,
    unknown_model_message,
)
from .option_spec import named, passing
from .outputs import AtomicFile

DOWNLOAD_TIMEOUT_S = 60  # per connection attempt and between received bytes, not for the whole file
# A single-file ONNX model is one protobuf, which can't exceed 2 GiB: a server sending more is not
# sending a model, and is stopped there rather than allowed to fill the disk.
MAX_MODEL_BYTES = 2 << 30


def pull_model(name: str, **settings: Any) -> Path:
    """Download the known model `name` into `model_dir` (else `$SALMAT_MODEL_DIR`'s first folder)
    from `url` (else its published address); returns the installed file."""
    opts = ModelsPullOptions.build(name=name, **settings)
    opts.validate()
    known = _checkable(_pullable(opts.name))
    dest = install_folder(opts.model_dir) / known.filename
    if dest.exists():
        return _already_there(known, dest)
    url = opts.url or str(known.url)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staged = AtomicFile(dest, overwrite=False)
        with staged as fh:  # becomes `dest` only when the block ends without an error and no file is there
            _download(url, fh, known)
            fh.flush()
            _check_sha256(staged.temp, known, url)
    except FileExistsError:  # installed meanwhile (a concurrent pull, or someone else): kept if it is this model
        return _already_there(known, dest, done="nothing was installed")
    except OSError as exc:  # the folder, not salmat: a file in its path, no permission, a full disk
        raise SalmatError(f"cannot install {known.id} in {dest.parent} ({exc.strerror or exc}); nothing was "
                          f"installed; pass {passing('model_dir', 'DIR')} naming a folder you can write to") from None
    return dest


def _pullable(name: str) -> KnownModel:
    if name in BUILTIN_MODELS:  # else "unknown model", which it is not
        raise SalmatError(f"{name} is built in: it has no file to download; use it by name (see `salmat models`)")
    if name not in KNOWN_MODELS:  # the usual advice (--model-path) is no flag of pull's
        own = f"or put your own .onnx file in a folder of {named('model_dir')}"
        raise SalmatError(unknown_model_message(name, own))
    return known_model(name)


def _checkable(known: KnownModel) -> KnownModel:
    if known.sha256 is None or known.url is None:
        raise SalmatError(f"{known.id} has no published source or checksum, so salmat can't download and check it; "
                          f"put its file ({known.filename}) in a folder of {named('model_dir')} yourself")
    return known


def install_folder(model_dir: str | os.PathLike[str] | None) -> Path:
    """Where a pulled file goes: `model_dir` (its first folder), else `$SALMAT_MODEL_DIR`'s first."""
    dirs = search_dirs(model_dir)
    if not dirs:
        raise SalmatError(f"no folder to install the model in: pass {passing('model_dir', 'DIR')} or set "
                          f"{ENV_VAR}=DIR")
    if dirs[0].exists() and not dirs[0].is_dir():
        raise SalmatError(f"{dirs[0]} is not a folder; pass {passing('model_dir', 'DIR')} naming a folder")
    return Path(os.path.abspath(dirs[0]))


def _already_there(known: KnownModel, dest: Path, done: str = "nothing was downloaded") -> Path:
    sha256 = file_sha256(dest)
    if sha256 == known.sha256:
        return dest
    raise SalmatError(f"{dest} already exists and is not {known.id} (its sha256 starts {sha256[:SHA_DIGITS]}, "
                      f"{known.id}'s {str(known.sha256)[:SHA_DIGITS]}); {done}: move that file "
                      f"away, or pull into another {named('model_dir')}")


def _download(url: str, fh: Any, known: KnownModel) -> None:
    try:
        import pooch
        import requests
    except ImportError:
        raise SalmatError("salmat models pull needs pooch: pip install 'salmat[pull]'") from None

    try:
        pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT_S)(url, _Capped(fh, known, url), None)
    except requests.exceptions.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "error"
        raise SalmatError(f"downloading {known.id} from {url} failed: the server answered HTTP {status}; nothing "
                          f"was installed; check the address ({named('url')}) and try again") from None
    except requests.exceptions.RequestException as exc:
        reason = " ".join(str(exc).split())[:200]
        raise SalmatError(f"downloading {known.id} from {url} failed ({type(exc).__name__}: {reason}); nothing was "
                          "installed; check the address and the network, and try again") from None


def _check_sha256(path: str, known: KnownModel, url: str) -> None:
    from pooch import file_hash

    got = file_hash(path, alg="sha256")
    if got != known.sha256:
        raise SalmatError(f"refused: the file from {url} is not {known.id} (its sha256 starts {got[:SHA_DIGITS]}, "
                          f"the published one {str(known.sha256)[:SHA_DIGITS]}); nothing was installed")


class _Capped:
    """The download's file, refusing to grow past `MAX_MODEL_BYTES` (an endless or huge answer)."""

    def __init__(self, fh: Any, known: KnownModel, url: str) -> None:
        self.fh, self.known, self.url, self.written = fh, known, url, 0

    def write(self, chunk: bytes) -> int:
        self.written += len(chunk)
        if self.written > MAX_MODEL_BYTES:
            raise SalmatError(f"refused: the file from {self.url} is over {MAX_MODEL_BYTES >> 20} MiB, more than any "
                              f"single-file ONNX model, so it is not {self.known.id}; nothing was installed")
        return int(self.fh.write(chunk))

    def flush(self) -> None:
        self.fh.flush()
