"""No process-wide state a second run or thread could see: the message spelling, what a run
published, the decoder's thread count and the last loaded model are each this thread's own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from salmat import outputs
from salmat.decode import _DECODE_THREADS, set_decode_threads
from salmat.models.spec import ModelSpec
from salmat.option_spec import cli_spelling, named, passing


def _in_thread(fn: Callable[[], Any]) -> Any:
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()))
    thread.start()
    thread.join(60)
    return box[0]


def test_a_cli_run_does_not_change_another_threads_spelling():
    with cli_spelling():
        assert named("ema_alpha") == "--ema-alpha" and passing("frame_samples", 4) == "--frame-samples 4"
        assert _in_thread(lambda: named("ema_alpha")) == "ema_alpha"
    assert named("ema_alpha") == "ema_alpha"

    def cli_elsewhere() -> str:
        with cli_spelling():
            return named("path_column")

    assert _in_thread(cli_elsewhere) == "--path-column" and named("path_column") == "path_column"


def test_what_a_run_published_is_that_runs_own(tmp_path):
    outputs.begin_run()

    def publish() -> str:
        outputs.begin_run()
        outputs.write_text(str(tmp_path / "other.txt"), "x\n")
        return outputs.stopped_message("stopped")

    assert "other.txt" in _in_thread(publish)
    assert outputs.stopped_message("stopped") == "salmat: stopped; no output was written"


def test_decoder_threads_are_set_per_thread():
    set_decode_threads(0)
    assert _in_thread(lambda: (set_decode_threads(3), _DECODE_THREADS.get())[1]) == 3
    assert _DECODE_THREADS.get() == 0


def test_the_reused_model_is_this_threads_own():
    spec = ModelSpec("image_signature_v1")
    here = spec.load()
    assert spec.load() is here  # the driver's load is reused by the in-process engine
    there = _in_thread(lambda: (spec.load(), spec.load()))
    assert there[0] is there[1] and there[0] is not here
