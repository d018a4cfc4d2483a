"""The real `tuitune` in tmux, as a user over SSH would drive it: every screen by key, at 80×24 and 200×50.

Each step sends keys with `tmux send-keys` and polls `capture-pane` (at most WAIT_S seconds) until the
screen's own text shows. The app runs with a fake H200 (TUITUNE_FAKE_GPU) and every user folder in tmp.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
WAIT_S = 30.0  # generous: a loaded 2-core CI machine mounts the form screens slowly
TUITUNE = str(Path(sys.executable).with_name("tuitune"))

# key -> (what must show, what the screen is)
SCREENS = [
    ("F3", "llama-3.1-8b", "Models"),
    ("F4", "Raw rows", "Dataset"),
    ("F5", "Presets", "Hyperparameters"),
    ("F6", "No run open", "Monitor"),
    ("F7", "Runs in", "Runs"),
    ("F2", "NVIDIA H200", "GPU"),
    ("F1", "Binding id", "Help"),
]


class Tmux:
    def __init__(self, socket: str, width: int, height: int, env: dict[str, str], status_file: Path):
        self.base = [TMUX, "-L", socket, "-f", os.devnull]
        self.target = "tuitune"
        self.status_file = status_file
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        # The exit status is written by a wrapper: tmux 3.3a can leave #{pane_dead_status} empty
        # for a program that exited 0, so the pane's own record cannot be relied on.
        wrapped = f"{shlex.quote(TUITUNE)}; echo $? > {shlex.quote(str(status_file))}"
        self.run("new-session", "-d", "-s", self.target, "-x", str(width), "-y", str(height),
                 f"env {exports} sh -c {shlex.quote(wrapped)}")
        self.run("set-option", "-t", self.target, "remain-on-exit", "on")

    def run(self, *args: str) -> str:
        result = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def send(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.target, *keys)

    def capture(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.target)

    def wait_for(self, text: str, what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{what}: {text!r} did not show within {WAIT_S} s. The pane shows:\n{screen}")

    def pane(self, field: str) -> str:
        return self.run("display-message", "-p", "-t", self.target, f"#{{{field}}}").strip()

    def wait_exit(self) -> int:
        """tuitune's exit status, as the wrapper shell wrote it."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            text = self.status_file.read_text().strip() if self.status_file.exists() else ""
            if text:
                return int(text)
            time.sleep(0.2)
        raise AssertionError(f"tuitune did not exit within {WAIT_S} s:\n{self.capture()}")

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10)


@pytest.mark.parametrize("width, height", [(80, 24), (200, 50)])
def test_every_screen_in_tmux(tmp_path, width, height):
    env = {
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HUB_CACHE": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TUITUNE_RUNS": str(tmp_path / "runs"),
        "TUITUNE_FAKE_GPU": "h200",
    }
    tmux = Tmux(f"tuitune-test-{os.getpid()}-{width}", width, height, env, tmp_path / "exit-status")
    try:
        first = tmux.wait_for("NVIDIA H200", "the GPU screen at start")
        assert "f3 Models" in first  # the footer shows the screen keys
        assert "140.4 GiB" in first and "CUDA 13.0" in first
        for key, marker, what in SCREENS:
            tmux.send(key)
            screen = tmux.wait_for(marker, f"{what} screen after {key}")
            lines = screen.splitlines()
            assert len(lines) <= height and all(len(line) <= width for line in lines)
        tmux.send("Escape")  # close help
        tmux.wait_for("Host", "the GPU screen after closing help")
        tmux.send("3")  # digits switch screens too where no text field has focus
        tmux.wait_for("Raw rows", "Dataset screen after 3")
        tmux.send("F7")
        tmux.wait_for("Runs in", "Runs screen")
        tmux.send("C-q")
        assert tmux.wait_exit() == 0
    finally:
        tmux.kill()
