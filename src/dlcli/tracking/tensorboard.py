"""logger=tensorboard: event files in <run>/tensorboard/ for `tensorboard --logdir runs`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlcli.config.constraints import POSITIVE_INT, constrained
from dlcli.tracking.base import RunLogger, final_numbers, typed_overrides


@constrained(log_every_n_steps=POSITIVE_INT)
class TensorBoardLogger(RunLogger):
    """Event files in <run>/tensorboard/: every metrics.csv column per epoch (step = epoch), the
    batch loss and learning rate every `log_every_n_steps` optimizer steps (in tensorboard/steps/),
    and at the end the overridden settings with the final numbers (the HPARAMS tab). Pictures are
    added by the process that draws them (dlcli.tracking.plots)."""

    option = "tensorboard"
    needs = "tensorboard"

    def __init__(self, log_every_n_steps: int = 50):
        super().__init__()
        self.every = log_every_n_steps
        self.epochs_writer = self.steps_writer = None
        self.step = 0

    def start(self, session, state) -> None:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (optional extra: pip install dlcli[tensorboard])

        from dlcli.engine.optim import current_lr  # noqa: PLC0415  (the drawing process, python -m dlcli.tracking.plots, loads this module without torch)
        from dlcli.engine.state import steps_taken  # noqa: PLC0415  (the drawing process, python -m dlcli.tracking.plots, loads this module without torch)

        self.session, self.current_lr = session, current_lr
        self.step = steps_taken(state, len(session.train_data), session.step.batch_size)  # a resume goes on counting
        directory = self.run.run_dir / "tensorboard"
        # On resume, anything logged after the checkpoint (lost epochs of a killed run) is purged.
        resumed = directory.is_dir()
        self.epochs_writer = SummaryWriter(str(directory), purge_step=state.epoch + 1 if resumed else None, flush_secs=10)
        self.steps_writer = SummaryWriter(str(directory / "steps"), purge_step=self.step + 1 if resumed else None, flush_secs=10)

    def on_batch_end(self, batch_size: int, loss) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self._safely(self._log_step, loss)

    def _log_step(self, loss) -> None:
        self.steps_writer.add_scalar("batch/loss", float(loss), self.step)
        self.steps_writer.add_scalar("batch/lr", self.current_lr(self.session.optimizer), self.step)

    def epoch(self, state, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.epochs_writer.add_scalar(key, value, row["epoch"])

    def summarize(self, summary: dict) -> None:
        hparams = typed_overrides(self.run.cfg, self.run.overrides) or {"name": str(self.run.cfg.name)}
        # run_name="." keeps the hparams beside the scalars, so TensorBoard shows them as one run
        self.epochs_writer.add_hparams(hparams, final_numbers(summary) or {"epochs_completed": summary.get("epochs_completed") or 0},
                                       run_name=".")

    def close(self) -> None:
        for writer in (self.epochs_writer, self.steps_writer):
            if writer is not None:
                writer.close()

    @classmethod
    def log_pictures(cls, run_dir: Path, paths) -> None:
        """The pictures as TensorBoard images, beside the run's scalars."""
        from PIL import Image  # noqa: PLC0415  (dl train runs without PIL)
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415  (optional extra: pip install dlcli[tensorboard])

        with SummaryWriter(str(run_dir / "tensorboard")) as writer:
            for path in paths:
                with Image.open(path) as image:
                    writer.add_image(path.stem, np.asarray(image.convert("RGB")), dataformats="HWC")


