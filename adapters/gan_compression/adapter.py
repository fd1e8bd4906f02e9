"""Adapter for https://github.com/mit-han-lab/gan-compression (GAN Compression, once-for-all distillation).

Use::

    vem-plugins install gan-compression
    cd third_party/gan-compression
    python distill.py <GAN Compression's own flags> --vem          # or --mi vid / --mi crd
    python train_supernet.py <its own flags> --vem [--restore_vem_path <distill>/latest_vem.pth]

Both stages (and finetuning, which is ``train_supernet.py --config_str ...``) gain the flags
through ``BaseResnetDistiller``, which they share. Each iteration the estimator takes its own
step first (for VEM: Langevin negatives, one Adam step of the energy network), then
``--lambda_mi`` x (E(t,s) - E(t~,s)) with the same negatives joins the student loss before
``backward()``. t is the paired target ``real_B`` for aligned data (pix2pix: edges2shoes-r,
cityscapes) and the detached teacher output for unaligned data (CycleGAN: horse2zebra), where the
energy network is 16 channels wide (64 otherwise; ``--ebm_width``). On Cityscapes (a
``--dataroot`` folder named ``*cityscapes*``, as in the paper scripts) the Langevin step is the
paper's 50, else 100, unless ``--ebm_step_size`` is given; the log says which. In the supernet
stage one energy model serves every sub-network sampled. The terms are logged with upstream's losses
(console, ``<log_dir>/log.txt``, TensorBoard ``G_loss/``): ``G_mi`` (the weighted term),
``G_energy_gap`` (E(t,s) - E(t~,s)), ``G_ebm_loss``, ``G_mi_skipped`` (non-finite steps skipped);
``--mi vid``/``crd`` log ``G_vid_nll`` or ``G_crd_loss``/``G_crd_estimate``. The estimator and its
optimiser are saved as ``<log_dir>/checkpoints/<epoch>_vem.pth`` beside upstream's files (not in
upstream's optimizer list, so ``--restore_O_path`` works either way); resume with upstream's
``--restore_*`` flags plus ``--restore_vem_path <that file>``. The student, its checkpoint, its
parameter count and ``export.py``'s compressed generator are the same with and without ``--vem``.
The paper scripts (``scripts/<task>/<dataset>/*.sh``) do not forward arguments; run them with
flags appended: ``bash -c "$(cat scripts/cycle_gan/horse2zebra/distill.sh) --vem"``.

Teachers and real statistics. The paper's runs start from upstream's pretrained teachers. The
download hosts in upstream's scripts are dead; the assets now live in the Hugging Face repository
``mit-han-lab/gan-compression`` (https://huggingface.co/mit-han-lab/gan-compression/tree/main;
``scripts/download_model.py`` already points there, ``datasets/download_real_stat.sh`` has a
``hhttps`` typo at the pin). From the checkout's root, put them where the paper scripts look::

    B=https://huggingface.co/mit-han-lab/gan-compression/resolve/main
    T=logs/cycle_gan/horse2zebra/mobile/checkpoints     # scripts/cycle_gan/horse2zebra/distill.sh
    mkdir -p real_stat $T
    wget -O real_stat/horse2zebra_B.npz $B/real_stat/horse2zebra_B.npz
    wget -O $T/latest_net_G_A.pth $B/pretrained/cycle_gan/horse2zebra/mobile/latest_net_G.pth
    wget -O $T/latest_net_D_A.pth $B/pretrained/cycle_gan/horse2zebra/mobile/latest_net_D.pth

Other tasks follow ``pretrained/<model>/<task>/<stage>/latest_net_{G,D}.pth`` (``pix2pix``:
``edges2shoes-r``, ``cityscapes``, ``map2sat``; ``cycle_gan``: ``horse2zebra``; stage ``mobile``
is the ``mobile_resnet_9blocks`` teacher of ``distill.sh``, ``full`` the ``resnet_9blocks``
teacher of Fast GAN Compression) and ``real_stat/<dataset>_<A|B>.npz`` (``edges2shoes-r_B``,
``cityscapes_A``, ``horse2zebra_B``, ...); pix2pix scripts expect ``latest_net_{G,D}.pth`` under
``logs/pix2pix/<task>/mobile/checkpoints/``. Upstream publishes no checksums in its repository;
Hugging Face publishes each file's sha256 (Git LFS): on the file's page
(``https://huggingface.co/mit-han-lab/gan-compression/blob/main/<path>``) or with
``huggingface_hub.HfApi().get_paths_info("mit-han-lab/gan-compression", [path],
expand=True)[0].lfs.sha256``; compare it with ``sha256sum <file>`` before training. A teacher
trained with upstream's ``train.py`` works too (the tests train one for a few iterations).

Compatibility (``01-compat.patch``, :mod:`vem_plugins.adapters.gan_compression.compat`): Python
3.11, torch 2.x, NumPy 2, SciPy >= 1.18, on CPU (``--gpu_ids -1``) and GPUs. Offline, FID is
skipped with a message naming the missing Inception file and where it goes
(``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``); ``--no_fid``/``--no_mIoU``
skip evaluation (the ``--real_stat_path`` file must still exist: upstream reads it at start-up);
a missing ``--drn_path`` skips Cityscapes mIoU with a message. Skipped metrics log as ``nan``,
so no ``best`` checkpoint is written: resume from ``latest_*``.
"""
import importlib.resources

from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter, Smoke, patch_series

_TEACHER = "{out}/teacher/checkpoints/latest_net_G.pth"
_TINY = "--gpu_ids -1 --load_size 64 --crop_size 64 --nepochs 1 --nepochs_decay 0 " \
        "--num_threads 0 --print_freq 1 --no_fid --dataroot {data} --real_stat_path {out}/stat.npz"

ADAPTER = Adapter(
    name="gan-compression",
    url="https://github.com/mit-han-lab/gan-compression",
    commit="111093fc62d459226f052cad5b950c80a3683197",
    **patch_series(importlib.resources.files("vem_plugins.patches") / "gan-compression"),
    requirements=("scipy", "tqdm", "tensorboardX", "torchprofile", "opencv-python-headless"),
    entry_points=("distill.py", "train_supernet.py"),
    assets={"datasets/metas/coco-stuff/train1.meta": "the COCO-Stuff (GauGAN) training split only",
            "imgs/demo_xavier.gif": "a README figure only"},
    smoke=Smoke(
        dataset="aligned", size=64, count=4,
        command=("bash", "-c",
                 "set -e; mkdir -p {out}; {python} -c \"import numpy as n; n.savez('{out}/stat.npz',"
                 " mu=n.zeros(2048), sigma=n.eye(2048))\"; "
                 "{python} train.py --model pix2pix --ngf 8 --ndf 8 --log_dir {out}/teacher " + _TINY
                 + "; {python} distill.py --distiller resnet --teacher_ngf 8 --pretrained_ngf 8 "
                 "--student_ngf 4 --ndf 8 --restore_teacher_G_path " + _TEACHER
                 + " --restore_pretrained_G_path " + _TEACHER + " --log_dir {out} " + _TINY
                 + " --vem --ebm_width 8 --ebm_blocks 2"),
        log="{out}/log.txt"),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
