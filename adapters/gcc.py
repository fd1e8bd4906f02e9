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

With ``--vem`` (:mod:`vem_plugins.adapters.gcc_vem`), in each model's ``backward_G`` the
estimator takes its own step, then ``--lambda_mi`` x its term joins ``loss_G`` before
``loss_G.backward()``. t is the detached output of the online teacher for the same latent or
input (SAGAN; CycleGAN, one estimator per direction) or the real target of paired data (pix2pix,
SRGAN); ``--mi_target`` overrides. ``logger.log`` shows ``mi`` (the weighted term),
``mi_energy_gap``, ``mi_ebm_loss`` and ``mi_skipped`` (``mi_A_*``/``mi_B_*`` for CycleGAN; other
statistics for ``--mi vid|crd``). GCC saves only ``{G, D, epoch, cfg, fid}`` and cannot resume, so
the estimator and its optimiser are saved beside each checkpoint as ``<checkpoint>_vem.pth``
(``_vemA``/``_vemB`` for CycleGAN), loadable with :meth:`vem_plugins.runtime.Runtime.load`; the
generator checkpoints and the MACs that pruning counts are unchanged.

Compatibility on torch 2.x, NumPy 2, Python 3.11, CPU (``--gpu_ids -1``) or a GPU
(:mod:`vem_plugins.adapters.gcc_compat`): Adam's ``betas=(0, 0.9)`` (ints) in SAGAN; two upstream
bugs, pix2pix's ``prune()`` signature and ``--generator_only`` (read by SRGAN, never defined, so
every SRGAN run stopped at option parsing); and evaluation. GCC evaluates every
``--save_epoch_freq`` epochs (forced to 5 for SAGAN) and saves checkpoints only there: FID needs
``<dataroot>/real_stat.npz`` (made by ``PYTHONPATH=. python metric/get_real_stat.py``) and the
Inception weights ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``, and it can
take very long on CPU. ``--no_eval`` skips it (logged); a failed evaluation is logged with what is
missing. Either way ``model_<epoch>.pth`` is saved and training continues. Requirements beyond
the venv: ``thop``, ``scipy``, ``tqdm``, ``opencv-python-headless``, ``scikit-image``.
"""
from vem_plugins import hookimpl
from vem_plugins.adapter import Adapter, Smoke, bundled

ADAPTER = Adapter(
    name="gcc",
    url="https://github.com/SJLeo/GCC",
    commit="a5b3cf681770146b0141b1846ae94b8bcfe39b68",
    patches=bundled("gcc", "01-compat.patch", "02-vem.patch"),
    file_hashes={
        "models/CycleGAN.py": "ac69687c22de91108c97dfadd2ef20328bd3238d02deae6bf190a67b20c71b62",
        "models/Pix2Pix.py": "18ca0fc7b1b8f454032885d411197b0604701ececbfbaf0c7c8547bb57f0c955",
        "models/SAGAN.py": "ac09cf2aa77bbc970ec20ed6d7549611121501527149ae49528ec9dbe3d26b4c",
        "models/SRGAN.py": "4939b4506ebe049bb499eee27f313710d716d8baa1ef5592833a4dea41da9ebb",
        "models/__init__.py": "e99b4dced9092009af1b37585b34d6e69f02d7234cd41c813708375844857ef3",
        "options/options.py": "362c7196b1ec1e999f1fb368a2c5a31ff99142c980a05ca12ffa2633cb4cfcdd",
        "train.py": "f46b071b5547756fe9c4550716910af099a598b5ae238fff42c91fa44e9cdd96",
    },
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
