"""A plugin that freezes the body once, in ``after_task(0)``: resume cannot know (it restores
tensors and state dicts, not ``requires_grad``), so the contract kit's resume check must fail
it with a message that says why (tests/test_plugins.py)."""

from __future__ import annotations

from cl_compress.strategies import Strategy


class FreezeOnce(Strategy):
    description = "fine-tune task 0, then train only the heads (freezes the body in after_task(0))"
    scenarios = ("task",)

    def after_task(self, task, data):
        if task == 0:
            self.net.body.requires_grad_(False)


class FreezeFromTask(FreezeOnce):
    """The same method, per-task flags derived from ``t`` in ``before_task``: resumes exactly."""

    def before_task(self, task, data):
        self.net.body.requires_grad_(task == 0)

    def after_task(self, task, data):
        pass


class RefusesInSetup(Strategy):
    """Refuses the model in ``setup``: the error must come before W&B starts."""

    description = "a plugin whose setup refuses every model"

    def setup(self, model, info):
        from cl_compress.errors import ConfigError

        raise ConfigError("refuses_in_setup needs a convolutional body; use model=cnn")
