"""quick_exit: the exit handler freezes the heap (so the interpreter's teardown skips the collector's
walk), is registered once, and still lets every file be flushed; every process entry point registers it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _python(code: str, tmp_path) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_exit_handler_freezes_what_is_alive_and_is_registered_once(tmp_path):
    out = _python("""
        import atexit, gc
        from tuitune.quick_exit import freeze_at_exit
        before = atexit._ncallbacks()
        freeze_at_exit(); freeze_at_exit()
        print(atexit._ncallbacks() - before, gc.get_freeze_count())
        atexit._run_exitfuncs()
        print(gc.get_freeze_count() > 1000)
    """, tmp_path)
    assert out.split() == ["1", "0", "True"]


def test_files_left_open_and_cycles_alive_are_still_written_at_exit(tmp_path):
    _python("""
        from tuitune.quick_exit import freeze_at_exit
        freeze_at_exit()
        log = open("left-open.txt", "w")
        log.write("every line reaches the disk\\n")
        ring = {"log": log}
        ring["self"] = ring
    """, tmp_path)
    assert (tmp_path / "left-open.txt").read_text() == "every line reaches the disk\n"


@pytest.mark.parametrize("entry", [
    "from tuitune.cli.main import main; main(['init', '--help'])",
    "from tuitune.trainer.rank_main import main; main(['no-run-here'])",  # relative: inside tmp_path
])
def test_process_entry_points_register_it(entry, tmp_path):
    out = _python(f"""
        import tuitune.quick_exit as quick_exit
        try:
            {entry}
        except BaseException:
            pass
        print(quick_exit._registered)
    """, tmp_path)
    assert out.strip().splitlines()[-1] == "True"
