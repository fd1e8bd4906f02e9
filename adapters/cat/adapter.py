"""Adapter for https://github.com/snap-research/CAT (compression-aware training, inception students).

Use::

    vem-plugins install cat
    cd third_party/cat
    python distill.py <CAT's own flags> --vem          # or --mi vid / --mi crd (baselines)

``distill.py --distiller inception`` (CAT's pruning + kernel-alignment distillation; CycleGAN
horse2zebra/zebra2horse, pix2pix cityscapes/map2sat) gains the flags. CAT prunes the teacher to
``--target_flops`` first, then distils; the energy model works on images, so it is independent of
the pruned architecture. Each iteration the estimator takes its own step first (for VEM: Langevin
negatives, one Adam step of the energy network), then ``--lambda_mi`` x (E(t,s) - E(t~,s)) with
the same negatives is back-propagated into the student together with CAT's own loss. t is the
paired target ``real_B`` for aligned (pix2pix) data and the detached teacher output for unaligned
(CycleGAN) data, where the energy network is 16 channels wide (64 otherwise; ``--ebm_width``).
On Cityscapes (a ``--dataroot`` folder named ``*cityscapes*``, as in the paper scripts) the
Langevin step is the paper's 50, else 100, unless ``--ebm_step_size`` is given; the log says which.
Logged with CAT's losses (console, ``<log_dir>/log.txt``, TensorBoard ``G_loss/``): ``G_mi``,
``G_energy_gap``, ``G_ebm_loss``, ``G_mi_skipped``; ``--mi vid``/``crd`` log ``G_vid_nll`` or
``G_crd_loss``/``G_crd_estimate``. The estimator and its optimiser are saved as
``<log_dir>/checkpoints/<epoch>_vem.pth``; resume with CAT's flags (``--prune_continue
--restore_student_G_path ... --restore_D_path ... --restore_A_path ... --restore_O_path ...``)
plus ``--restore_vem_path <that file>``. The pruned student, its MACs ("netG student FLOPs"),
parameter count, checkpoint and ``onnx_export.py``'s ONNX file are the same with and without
``--vem``. Paper scripts take appended flags:
``bash -c "$(cat scripts/cycle_gan/horse2zebra/train_inception_student_2p6B.sh) --vem"``.

Licence. Fourteen Snap-authored files (``trainer.py``, ``distill.py``, ``distillers/*.py``, ...)
grant no licence to copy or modify them: the patches add no line to them. ``02-vem.patch``
appends two lines to ``options/distill_options.py`` that wire :mod:`vem_plugins.adapters.cat.glue`
into the inception distiller at run time.

Teachers and real statistics. CAT publishes its pretrained teachers (and students) in the Google
Drive folder https://drive.google.com/drive/folders/1WQbqgqwJdVT6Q-8Bs-vp24jJ3v1dgjU9 and its
real-statistics files (``horse2zebra_B.npz``, ``cityscapes_A.npz``, ...) in
https://drive.google.com/drive/folders/1kSH8vPuO6i_oAMzi3V6aVox3UQCtYIiB (its README; fetch a
folder with ``pip install gdown; gdown --folder <url>``). Put the teacher's
``best_A_net_G_A.pth``/``best_A_net_D_A.pth`` (CycleGAN) or ``best_net_G.pth``/``best_net_D.pth``
(pix2pix) where ``scripts/*/train_inception_student_*.sh`` expect them
(``logs/<task>/<dataset>/inception/teacher/checkpoints/``) and the statistics under
``real_stat/``. CAT publishes no checksums: record ``sha256sum`` of what you downloaded. Or train
the teacher with ``scripts/*/train_inception_teacher.sh`` (upstream's ``train.py``; the tests train
one for a few iterations) and compute statistics with ``get_real_stat.py`` (it needs the FID
Inception weights). A teacher never trained (random init) gives all InstanceNorm scales 1.0 and
CAT's pruning then removes every inception branch; a ``--target_flops`` below what pruning can
reach with ``--prune_cin_lb`` makes CAT's pruning loop forever (upstream behaviour).

Compatibility (``01-compat.patch``, :mod:`vem_plugins.adapters.cat.compat`): Python 3.11, torch 2.x
(CAT's ``profile.py`` no longer shadows the standard library's), NumPy 2, SciPy >= 1.18, on CPU
(``--gpu_ids -1``; profiling and pruning no longer require CUDA) and GPUs. ``train.py`` and
``distill.py --distiller inception`` gain ``--no_fid``/``--no_mIoU``; offline, FID is skipped with
a message naming the missing Inception file and where it goes
(``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), a missing ``--drn_path``
skips mIoU; skipped metrics log as ``nan`` and no ``best_*`` checkpoint is written (use
``latest_*``). ``--prune_continue`` resumes from pruned checkpoints (it failed upstream).
``onnx_export.py`` needs ``onnx`` and ``onnxscript`` with torch >= 2.9 (torch's default exporter);
it then writes opset 18 with a warning, as the requested opset 11 cannot be converted to.
"""
import importlib.resources

from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter, Smoke, patch_series

_TEACHER = "{out}/teacher/checkpoints/latest_net_G.pth"
_COMMON = "--gpu_ids -1 --load_size 64 --crop_size 64 --nepochs 1 --nepochs_decay 0 " \
          "--num_threads 0 --print_freq 1 --no_fid --dataroot {data} --real_stat_path {out}/stat.npz " \
          "--netG inception_9blocks --norm batch --norm_affine --norm_affine_D " \
          "--norm_track_running_stats --channels_reduction_factor 6 --kernel_sizes 1 3 5"

ADAPTER = Adapter(
    name="cat",
    url="https://github.com/snap-research/CAT",
    commit="1dbd048cc91e3cc2c59d4e4f0434e79ac260e7ed",
    **patch_series(importlib.resources.files("vem_plugins.patches") / "cat"),
    requirements=("scipy", "tqdm", "tensorboardX", "torchprofile", "opencv-python-headless",
                  "pyyaml", "packaging"),
    entry_points=("distill.py",),
    assets={"images/anime.gif": "a README figure only", "images/input.gif": "a README figure only",
            "images/night.gif": "a README figure only", "images/style.gif": "a README figure only"},
    smoke=Smoke(
        dataset="aligned", size=64, count=4,
        command=("bash", "-c",
                 "set -e; mkdir -p {out}; {python} -c \"import numpy as n; n.savez('{out}/stat.npz',"
                 " mu=n.zeros(2048), sigma=n.eye(2048))\"; "
                 "{python} train.py --model pix2pix --ngf 16 --ndf 16 --log_dir {out}/teacher "
                 + _COMMON + "; {python} distill.py --distiller inception --teacher_ngf 16 "
                 "--pretrained_ngf 16 --student_ngf 16 --ndf 16 --restore_teacher_G_path " + _TEACHER
                 + " --restore_pretrained_G_path " + _TEACHER + " --target_flops 2e7 "
                 "--prune_cin_lb 2 --log_dir {out} " + _COMMON.replace("--netG", "--teacher_netG")
                 + " --vem --ebm_width 8 --ebm_blocks 2"),
        log="{out}/log.txt"),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
