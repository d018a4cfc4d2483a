"""The bench's measuring processes run the tuitune the parent runs, whatever folder it is started from."""

from tuitune.bench.runner import run_child


def test_a_child_imports_the_parents_tuitune_not_the_working_folders(tmp_path, monkeypatch):
    decoy = tmp_path / "tuitune"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "__main__.py").write_text("print('decoy checkout')\n")
    monkeypatch.chdir(tmp_path)
    done = run_child("tuitune", "--help", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "decoy" not in done.stdout and "bench" in done.stdout, done.stdout
