"""Adapter for https://github.com/SJLeo/GCC (generator-discriminator cooperative compression).

Use::

    vem-plugins install gcc
    cd third_party/gcc
    python train.py <GCC's flags, e.g. those of scripts/sagan/train.sh> --vem   # or --mi vid|crd

GCC's pipeline has two stages (``scripts/<model>/{pretrain_for_pruning,train}.sh``, for ``sagan``
(the paper's CelebA 64x64 setting), ``pix2pix``, ``cyclegan`` and ``srgan``):

1. *Pre-training for pruning* (``train.py`` with ``--lambda_scale``/``--lambda_weight``, no
   distillation) trains a full-width, sparsity-regularised generator. Its checkpoint only fixes
   the pruned channel widths: stage 2 re-initialises the student and trains its teacher from
   scratch (only SRGAN loads a teacher, ``--teacher_initial_path``). Make it with GCC's own
   ``scripts/<model>/pretrain_for_pruning.sh``; no pretrained weights are needed. Any checkpoint
   in GCC's format ``{'G', 'D', 'epoch', 'cfg', 'fid'}`` whose BatchNorm scales (filter norms for
   CycleGAN) are spread out will do: the tests use a random one.
2. *The GCC run* (``scripts/<model>/train.sh``: ``--scale_prune``/``--norm_prune``,
   ``--pretrain_path``, ``--online_distillation``) prunes, then trains student and teacher
   together. ``--vem`` belongs to this stage (it needs ``--online_distillation``).

With ``--vem`` (:mod:`vem_plugins.adapters.gcc.glue`), in each model's ``backward_G`` the
estimator takes its own step, then ``--lambda_mi`` x its term joins ``loss_G`` before
``loss_G.backward()``. t is the detached output of the online teacher for the same latent or
input (SAGAN; CycleGAN, one estimator per direction) or the real target of paired data (pix2pix,
SRGAN); ``--mi_target`` overrides. ``logger.log`` shows ``G_mi`` (the weighted term),
``G_energy_gap``, ``G_ebm_loss`` and ``G_mi_skipped`` (``G_A_*``/``G_B_*`` for CycleGAN; other
statistics for ``--mi vid|crd``). GCC saves only ``{G, D, epoch, cfg, fid}`` and cannot resume, so
the estimator and its optimiser are saved beside each checkpoint as ``<checkpoint>_vem.pth``
(``_vemA``/``_vemB`` for CycleGAN), loadable with :meth:`vem_plugins.method.runtime.Runtime.load`; the
generator checkpoints and the MACs that pruning counts are unchanged.

Compatibility on torch 2.x, NumPy 2, Python 3.11, CPU (``--gpu_ids -1``) or a GPU
(:mod:`vem_plugins.adapters.gcc.compat`): Adam's ``betas=(0, 0.9)`` (ints) in SAGAN; two upstream
bugs, pix2pix's ``prune()`` signature and ``--generator_only`` (read by SRGAN, never defined, so
every SRGAN run stopped at option parsing); and evaluation. GCC evaluates every
``--save_epoch_freq`` epochs (forced to 5 for SAGAN) and saves checkpoints only there: FID needs
``<dataroot>/real_stat.npz`` (made by ``PYTHONPATH=. python metric/get_real_stat.py``) and the
Inception weights ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``, and it can
take very long on CPU. ``--no_eval`` skips it (logged); a failed evaluation is logged with what is
missing. Either way ``model_<epoch>.pth`` is saved and training continues. Requirements beyond
the venv: ``thop``, ``scipy``, ``tqdm``, ``opencv-python-headless``, ``scikit-image``.
"""
import importlib.resources

from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter, Smoke, patch_series

ADAPTER = Adapter(
    name="gcc",
    url="https://github.com/SJLeo/GCC",
    commit="a5b3cf681770146b0141b1846ae94b8bcfe39b68",
    **patch_series(importlib.resources.files("vem_plugins.patches") / "gcc"),
    requirements=("thop", "scipy", "tqdm", "opencv-python-headless", "scikit-image"),
    entry_points=("train.py",),
    # pix2pix: GCC forces 100 epochs on SAGAN and CycleGAN. No pruning (that needs a
    # pre-training checkpoint): the full-width student distils from its online teacher.
    smoke=Smoke(
        dataset="aligned", size=256, count=2,
        command=("{python}", "train.py", "--dataroot", "{data}", "--model", "pix2pix",
                 "--online_distillation", "--lambda_content", "1", "--lambda_gram", "1",
                 "--ngf", "8", "--ndf", "8", "--teacher_ngf", "8", "--n_epochs", "1",
                 "--n_epochs_decay", "0", "--gpu_ids", "-1", "--num_threads", "0",
                 "--print_freq", "1", "--no_eval", "--checkpoints_dir", "{out}",
                 "--name", "smoke", "--vem", "--ebm_width", "8", "--ebm_blocks", "2"),
        log="{out}/smoke/logger.log"),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
