"""model.train() walks the model only when a module's mode would change."""

import torch

from tuitune.trainer.mode_switch import skip_redundant_mode_switches


def _model():
    return torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 2)))


def test_a_switch_that_changes_nothing_walks_nothing(monkeypatch):
    model = _model()
    skip_redundant_mode_switches(model)
    walks = []
    stock = torch.nn.Module.train
    monkeypatch.setattr(torch.nn.Module, "train", lambda self, mode=True: walks.append(mode) or stock(self, mode))
    model.train()
    first = len(walks)
    assert first == len(list(model.modules())) - 1  # the first call switches every submodule
    for _ in range(3):
        assert model.train() is model
    assert len(walks) == first
    model.eval()
    assert not any(m.training for m in model.modules()) and len(walks) == 2 * first
    model.train(True)
    assert all(m.training for m in model.modules())


def test_a_module_switched_on_its_own_is_switched_back():
    model = _model()
    skip_redundant_mode_switches(model)
    model.train()
    model[1][0].eval()  # the dropout alone
    model.train()
    assert all(m.training for m in model.modules())
    model.eval()
    model[1].train()
    model.eval()
    assert not any(m.training for m in model.modules())


def test_wrapping_twice_wraps_once():
    model = _model()
    skip_redundant_mode_switches(model)
    wrapped = model.__dict__["train"]
    skip_redundant_mode_switches(model)
    assert model.__dict__["train"] is wrapped
