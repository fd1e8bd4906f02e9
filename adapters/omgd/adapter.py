r"""Adapter for https://github.com/bytedance/OMGD (online multi-granularity distillation).

Use::

    vem-plugins install omgd
    cd third_party/omgd
    python distill.py <OMGD's own flags> --vem           # or --mi vid / --mi crd (baselines)

OMGD distils online: the teachers train from scratch beside the student inside ``distill.py``,
so no pretrained generators are needed. Both of its distillers gain the flags:

* ``--distiller multiteacher`` (pix2pix, paired: edges2shoes, cityscapes; U-Net and ResNet): t is
  the real target ``real_B`` (``--mi_target teacher``: the wide teacher's detached output);
* ``--distiller cycleganbest`` (CycleGAN, unpaired: horse2zebra, summer2winter): t is the
  detached output of the (best-FID) teacher the student learns from in its student phase; the
  energy network is 16 channels wide there (``--ebm_width``), 64 for pix2pix.

On Cityscapes (a ``--dataroot`` folder named ``*cityscapes*``, as in the paper scripts) the
Langevin step is the paper's 50, else 100, unless ``--ebm_step_size`` is given; the log says which.

Each student step the estimator takes its own step first (for VEM: Langevin negatives and one
Adam step of the energy network), then ``--lambda_mi`` x (E(t,s) - E(t~,s)) with the same
negatives joins the student loss before its ``backward()``. The terms appear in OMGD's loss log
(console, ``<log_dir>/log.txt``, TensorBoard under ``S_loss/``): ``S_mi`` (the weighted term),
``S_energy_gap`` (E(t,s) - E(t~,s)), ``S_ebm_loss`` and ``S_mi_skipped`` (steps skipped as
non-finite); ``--mi vid``/``crd`` log ``S_vid_nll`` or ``S_crd_loss``/``S_crd_estimate``.
The estimator and its optimiser are saved as ``<epoch>_vem.pth`` beside OMGD's checkpoints
(pix2pix: ``<log_dir>/checkpoints/``; CycleGAN: ``<log_dir>/checkpoints/student/``, where OMGD
spells its latest student ``lastet``); resume with OMGD's ``--restore_*`` flags plus
``--restore_vem_path``, e.g. for pix2pix (``C=<log_dir>/checkpoints``)::

    python distill.py <same flags> --vem --restore_student_G_path $C/latest_net_G_student.pth \
        --restore_teacher_G_w_path $C/latest_netG_teacher_w.pth \
        --restore_teacher_G_d_path $C/latest_net_G_teacher_d.pth \
        --restore_D_path $C/latest_net_D_teacher.pth --restore_A_path $C/latest_net_A \
        --restore_O_path $C/latest_optim --restore_vem_path $C/latest_vem.pth \
        --epoch_base <next epoch> --iter_base <iterations done>

The student, its checkpoint and OMGD's MACs/parameter profile are the same with and without
``--vem``.

``--vem_record`` (with or without ``--vem``) also writes a run record into
``<log_dir>/vem_record`` for ``vem-plugins report <log_dir> [<other log_dir> ...]``: losses, image
samples every ``--vem_record_every`` steps (with the Langevin samples t~), the student's size,
OMGD's metrics and PSNR/SSIM of the student on the ``val`` pairs of aligned data.
``vem-plugins try`` runs the ``tryout`` recipe below with and without ``--vem`` and reports.

The paper scripts (``scripts/<task>/<dataset>/distill*.sh``) hard-code ``--gpu_ids`` and do not
forward arguments. Run them unchanged with flags appended (a repeated flag overrides: the last
one wins)::

    bash -c "$(cat scripts/cycle_gan/horse2zebra/distill.sh) --vem"
    bash -c "$(cat scripts/resnet_pix2pix/edges2shoes/distill.sh) --vem --gpu_ids 0"

Compatibility (``01-compat.patch``, see :mod:`vem_plugins.adapters.omgd.compat`): OMGD runs on
Python 3.11, torch 2.x, NumPy 2 and SciPy >= 1.18, on CPU (``--gpu_ids -1``) and on one or
several GPUs. Offline, FID is skipped with a message naming the missing Inception file and where
it goes (``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), and
``--no_fid``/``--no_mIoU`` turn evaluation off (then the FID statistics ``--real_stat_*path`` are
not needed either). The training loss itself needs torchvision's ImageNet VGG16
(``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``); without it training stops with a message
saying so. Upstream bugs that do not depend on the environment are left as they are
(``--direction BtoA`` and ``--restore_teacher_D_*_path`` of ``cycleganbest``,
``scripts/resnet_pix2pix/edges2shoes/distill_S24.sh``, ``--lr_policy cosine|plateau``, the last
file of every unaligned dataset being dropped).
"""
import importlib.resources

from vem_plugins import hookimpl
from vem_plugins.authoring.adapter import Adapter, Smoke, Tryout, patch_series

ADAPTER = Adapter(
    name="omgd",
    url="https://github.com/bytedance/OMGD",
    commit="f2492a449498e6b88289666b02ddc47b2296465c",
    **patch_series(importlib.resources.files("vem_plugins.patches") / "omgd"),
    requirements=("scipy", "tqdm", "tensorboardX", "torchprofile", "opencv-python-headless"),
    entry_points=("distill.py",),
    assets={"imgs/OMGD.png": "a README figure only",
            "imgs/performance.png": "a README figure only"},
    smoke=Smoke(
        dataset="aligned", size=64, count=4,
        command=("{python}", "distill.py", "--dataroot", "{data}", "--distiller", "multiteacher",
                 "--gpu_ids", "-1", "--log_dir", "{out}", "--no_fid", "--batch_size", "2",
                 "--teacher_netG_w", "mobile_resnet_9blocks",
                 "--teacher_netG_d", "mobile_deepest_resnet",
                 "--student_netG", "mobile_resnet_9blocks", "--teacher_ngf_w", "8",
                 "--teacher_ngf_d", "4", "--student_ngf", "4", "--ndf", "8",
                 "--load_size", "64", "--crop_size", "64", "--nepochs", "1",
                 "--nepochs_decay", "0", "--num_threads", "0", "--print_freq", "1",
                 "--vem", "--ebm_width", "8", "--ebm_blocks", "2"),
        log="{out}/log.txt"),
    # Small nets, OMGD's full student loss with a seeded random VGG16 (--random_vgg: no
    # download), FID off (its Inception is a download and costly on CPU): minutes on a CPU.
    tryout=Tryout(
        command=("{python}", "distill.py", "--dataroot", "{data}", "--distiller", "multiteacher",
                 "--gpu_ids", "-1", "--log_dir", "{out}", "--no_fid", "--batch_size", "4",
                 "--teacher_netG_w", "mobile_resnet_9blocks",
                 "--teacher_netG_d", "mobile_deepest_resnet",
                 "--student_netG", "mobile_resnet_9blocks", "--teacher_ngf_w", "16",
                 "--teacher_ngf_d", "8", "--student_ngf", "8", "--ndf", "16",
                 "--load_size", "64", "--crop_size", "64", "--nepochs", "{epochs}",
                 "--nepochs_decay", "0", "--num_threads", "0", "--print_freq", "5",
                 "--save_epoch_freq", "1", "--random_vgg",
                 "--vem_record", "--vem_record_every", "40")),
)


@hookimpl
def register_adapters(register):
    register(ADAPTER)
