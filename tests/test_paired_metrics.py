"""PSNR/SSIM against scikit-image's reference implementations."""
import pytest
import torch

from vem_plugins.commands.paired_metrics import psnr_sum, ssim_sum

metrics = pytest.importorskip("skimage.metrics", reason="the reference needs scikit-image "
                                                        "(pip install -e '.[upstream]')")


def pair(seed, noise):
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(3, 3, 24, 40, generator=g) * 2 - 1
    return (target + noise * torch.randn(target.shape, generator=g)).clamp(-1, 1), target


@pytest.mark.parametrize("noise", [0.05, 0.3, 1.0])
def test_match_scikit_image(noise):
    out, target = pair(1, noise)
    unit = lambda x: ((x + 1) / 2).permute(1, 2, 0).numpy()  # noqa: E731
    psnr = sum(metrics.peak_signal_noise_ratio(unit(y), unit(x), data_range=1)
               for x, y in zip(out, target))
    ssim = sum(metrics.structural_similarity(unit(x), unit(y), channel_axis=2, data_range=1,
                                             gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False)
               for x, y in zip(out, target))
    assert psnr_sum(out, target) == pytest.approx(psnr, rel=1e-5)
    assert ssim_sum(out, target) == pytest.approx(ssim, abs=1e-5)


def test_identical_and_order():
    out, target = pair(2, 0.2)
    assert ssim_sum(target, target) == pytest.approx(3.0)
    assert psnr_sum(target, target) == pytest.approx(300.0)  # 100 dB each, not infinite
    worse, _ = pair(2, 0.6)
    assert psnr_sum(worse, target) < psnr_sum(out, target)
    assert ssim_sum(worse, target) < ssim_sum(out, target)
