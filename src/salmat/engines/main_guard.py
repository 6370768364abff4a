"""Is salmat being called from a script that worker processes would run again?

Worker processes are spawned, or forked from a fork server that is itself a fresh
interpreter: either way each one imports the `__main__` script again
(as `__mp_main__`) before it can start. A script that calls
`salmat.materialize` at its top level, outside `if __name__ == "__main__":`,
would then start the whole run again inside every worker, and each one dies
with a page of multiprocessing tracebacks. This module finds that case
*before* any worker is started, by the same rule multiprocessing uses to
decide what a spawned child re-imports, and by reading where, in the
script's source, the call came from.
"""

from __future__ import annotations

import ast
import os
import sys
from types import FrameType


def unguarded_call() -> str | None:
    """`script.py:LINE` when this call comes from top-level code of a `__main__` script that a
    spawned worker would run again, outside an `if __name__ == "__main__":` block; else None."""
    main = sys.modules.get("__main__")
    if main is None or not _spawn_reruns(main):
        return None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is vars(main):
            filename, line = frame.f_code.co_filename, frame.f_lineno
            return None if _guarded(filename, line) else f"{os.path.basename(filename)}:{line}"
        frame = frame.f_back
    return None


def _spawn_reruns(main: object) -> bool:
    """multiprocessing.spawn's own rule: a module run with `-m` is re-imported by name unless it
    is a package's `__main__`; a script by path unless it is IPython; anything else not at all."""
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None:
        return not (spec_name == "__main__" or spec_name.endswith(".__main__"))
    path = getattr(main, "__file__", None)
    return path is not None and os.path.splitext(os.path.basename(path))[0] != "ipython"


def _guarded(filename: str, line: int) -> bool:
    """Whether `line` lies inside an `if __name__ == "__main__":` body of the script. A source that
    can't be read or parsed is given the benefit of the doubt."""
    try:
        with open(filename, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), filename)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test) and node.body:
            end = node.body[-1].end_lineno or node.body[-1].lineno
            if node.body[0].lineno <= line <= end:
                return True
    return False


def _is_main_test(test: ast.expr) -> bool:
    """`__name__ == "__main__"`, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    consts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(consts) == 1
