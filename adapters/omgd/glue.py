"""VEM inside OMGD's two distillers: the glue that ``02-vem.patch`` calls.

Where the patch hooks in (one short call each):

* ``DistillOptions.initialize``: :func:`add_options` gives both distillers vem-plugins' flags
  (``--vem``, ``--mi``, ``--lambda_mi``, ``--ebm_*``) and ``--restore_vem_path``;
  ``CycleganBestDistiller.modify_commandline_options``: :func:`cyclegan_defaults`.
* End of each distiller's ``__init__``: ``self.vem = attach(self)`` (a :class:`Glue`).
* Just before the student's ``backward()``: :meth:`Glue.add_student_term` runs the estimator's
  own step (the EBM step) and then adds lambda * (E(t,s) - E(t~,s)) with the same Langevin
  samples. t is ``real_B`` (the paired target) in ``multiteacher`` (pix2pix) and the detached
  teacher output ``self.fake`` in ``cycleganbest`` (CycleGAN), as in the paper.
* CycleGAN's student phase prints its losses but never plots them: :meth:`Glue.plot`.
* End of ``save_networks`` (pix2pix, ``checkpoints/``) and ``save_student_networks`` (CycleGAN,
  ``checkpoints/student/``): :meth:`Glue.save` writes ``{epoch}_vem.pth`` (the estimator, its
  Adam state and step count).

With ``--vem_record`` (with or without ``--vem``) the glue also writes a run record for
``vem-plugins report`` into ``<log_dir>/vem_record`` (:mod:`vem_plugins.commands.record`): OMGD's losses
every ``--print_freq`` student steps, image samples every ``--vem_record_every`` steps, the
student's size, and at each of OMGD's evaluations its metrics plus PSNR/SSIM of the student on
the held-out (``val``) pairs of aligned data.

The estimator's optimiser is not in OMGD's ``self.optimizers``: its learning rate stays constant
(as in the paper) and ``--restore_O_path`` works on checkpoints made with or without ``--vem``.
The estimator is not in ``model_names`` either, so OMGD's MACs/parameter profile, its network
printouts and the student checkpoint are the same with and without ``--vem``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from vem_plugins.method import options
from vem_plugins.commands import record
from vem_plugins.commands.paired_metrics import psnr_sum, ssim_sum
from vem_plugins.method.runtime import Runtime

#: OMGD's student loss terms (both distillers), as named in ``loss_names``.
STUDENT_LOSSES = ("G_SSIM", "G_style", "G_feature", "G_tv", "G_CD")
#: OMGD's ``get_current_losses`` asserts on names without a ``G_``/``D_``/``S_`` prefix; ``S_``
#: (student) keeps ours apart from the teachers' ``G_`` terms.
PREFIX = "S_"


def add_options(parser):
    """vem-plugins' flags (``--restore_vem_path`` resumes the estimator) and ``--vem_record``."""
    return record.add_options(options.add_options(parser))


def cyclegan_defaults(parser):
    """The paper's energy-network width for CycleGAN (16; pix2pix keeps 64)."""
    parser.set_defaults(ebm_width=16)
    return parser


class Glue:
    """vem-plugins inside one OMGD distiller (``model``)."""

    def __init__(self, model):
        self.model = model
        self.runtime = Runtime(model.opt, model.device)  # restores --restore_vem_path
        self.steps = 0
        self.record = None
        if model.opt.vem_record:
            self.record = record.RunRecord(model.opt.log_dir, model.opt.vem_record_every)
            checkout = Path(sys.modules[type(model).__module__].__file__).parents[1]
            self.record.start("omgd", self.runtime.context.options, self.enabled, checkout,
                              student_losses=STUDENT_LOSSES)
            model.evaluate_model = self._evaluated(model.evaluate_model)

    @property
    def enabled(self) -> bool:
        return self.runtime.enabled

    def add_student_term(self, loss, student, teacher=None, real=None):
        """``loss`` + the MI term, after the estimator's own step; ``loss`` itself without --vem."""
        self.steps += 1
        loss = self.runtime.add_term(loss, student=student, teacher=teacher, real=real,
                                     log_to=self.model, prefix=PREFIX)
        if self.record is not None:
            self._record(student, teacher, real)
        return loss

    def _record(self, student, teacher, real):
        model, step = self.model, self.steps
        if step == 1:
            sizes = {"student": record.model_size(model.netG_student, model.real_A)}
            sizes.update({"estimator": record.model_size(m) for m in self.runtime.modules()})
            self.record.models(**sizes)
        if step == 1 or step % model.opt.print_freq == 0:
            ours = self.runtime.log_values(PREFIX)
            upstream = {name: float(getattr(model, "loss_" + name)) for name in model.loss_names
                        if name not in ours and hasattr(model, "loss_" + name)}
            self.record.scalars(step, upstream, self.runtime.log_values())
        if self.record.wants_samples(step):
            self.record.samples(step, input=model.real_A, target=real, teacher=teacher,
                                student=student, langevin=self.runtime.negatives())

    def _evaluated(self, evaluate):
        """``evaluate_model`` that also records its metrics and the held-out PSNR/SSIM."""
        def evaluate_model(step):
            metrics = evaluate(step)
            self.record.metrics(step, {**metrics, **self.heldout()})
            return metrics
        return evaluate_model

    def heldout(self) -> dict:
        """Mean PSNR/SSIM of the student against the real targets of the ``val`` pairs."""
        model = self.model
        loader = getattr(model, "eval_dataloader", None)
        if loader is None or model.opt.dataset_mode != "aligned":
            return {}  # unpaired data (CycleGAN): no target to compare with
        net, count, psnr, ssim = model.netG_student, 0, 0.0, 0.0
        was = net.training
        net.eval()
        with torch.no_grad():
            for data in loader:
                model.set_input(data)
                out = net(model.real_A)
                psnr += psnr_sum(out, model.real_B)
                ssim += ssim_sum(out, model.real_B)
                count += out.shape[0]
        net.train(was)
        return {"heldout_psnr": psnr / count, "heldout_ssim": ssim / count} if count else {}

    def plot(self, losses: dict, step: int) -> None:
        """Send this glue's entries of OMGD's ``losses`` dict to TensorBoard."""
        names = self.runtime.log_values(PREFIX)
        ours = {k: v for k, v in losses.items() if k.split("/")[-1] in names}
        if ours:
            self.model.logger.plot(ours, step)

    def save(self, directory: str, epoch) -> None:
        """Write ``{epoch}_vem.pth`` into ``directory`` (nothing without --vem)."""
        self.runtime.save(os.path.join(directory, f"{epoch}_vem.pth"))


def attach(model) -> Glue:
    """Build the glue for ``model`` (called at the end of the distiller's ``__init__``)."""
    return Glue(model)
