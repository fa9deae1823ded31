"""Training augmentation as nnU-Net does it, on torch tensors on any device: one patch per draw.

`RandPatchAugmentd` crops a patch centred on the tumour (probability ``pos``) or anywhere in the volume, rotating and
scaling it in the same resampling (one ``grid_sample``, so a rotated patch costs one interpolation, not two), mirrors
it along each axis, and applies nnU-Net's intensity augmentation to the image channels: noise, blur, brightness,
contrast, low resolution, gamma. Image ``(C, H, W, D)`` float; label ``(R, H, W, D)`` float regions (soft after a
resampling), interpolated linearly; a patch beyond the volume is padded with 0. The probabilities are nnU-Net's
defaults (`docs/recipe.md`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from pipeline.data.labels import has_ignore, join_ignore, split_ignore


def _rotation(angles: Sequence[float]) -> torch.Tensor:
    """The 3 x 3 rotation by ``angles`` (radians) about the first, second and third axis, in that order."""
    (cx, cy, cz), (sx, sy, sz) = [math.cos(a) for a in angles], [math.sin(a) for a in angles]
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float32)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float32)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float32)
    return rz @ ry @ rx


def _crop(volume: torch.Tensor, start: Sequence[int], size: Sequence[int]) -> torch.Tensor:
    """``volume[:, start:start+size]`` per axis, zero-padded where it leaves the volume."""
    slices, pad = [], []
    for lo, n, s in zip(start, size, volume.shape[1:], strict=True):
        a, b = max(lo, 0), min(lo + n, s)
        slices.append(slice(a, max(a, b)))
        pad.append((a - lo, lo + n - max(a, b)))
    out = volume[(slice(None), *slices)]
    if any(p for pair in pad for p in pair):
        out = F.pad(out, [p for pair in reversed(pad) for p in pair])
    return out


def _blur(x: torch.Tensor, sigma: float | Sequence[float]) -> torch.Tensor:
    """A separable Gaussian blur of each channel of ``x`` ``(C, H, W, D)``; ``sigma`` one for all axes or one per
    axis."""
    sigmas = [float(sigma)] * 3 if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
    y = x[None]
    for axis, s in enumerate(sigmas):
        r = max(1, math.ceil(2 * s))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / s) ** 2)
        k = k / k.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(k)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        y = F.conv3d(F.pad(y, pad, mode="replicate"), k.reshape(shape).repeat(x.shape[0], 1, 1, 1, 1),
                     groups=x.shape[0])
    return y[0]


class RandPatchAugmentd(Randomizable, MapTransform):
    """One augmented patch of ``roi_size`` from an image and its label regions (see the module docstring).

    Args:
        keys: the image key then the label key (``["image", "label"]``).
        roi_size: the patch size.
        fg_indices_key: flat indices of tumour voxels (MONAI's ``FgBgToIndicesd``, cached with the volume).
        pos: probability that the patch is centred on a tumour voxel (nnU-Net oversamples a third of the patches).
        rotate_prob, rotate_range: probability and range (radians, each axis) of a rotation.
        scale_prob, scale_range: probability and range of an isotropic zoom (``(0.7, 1.4)``: nnU-Net's).
        flip_prob: probability of a mirror along each axis.
        intensity: apply nnU-Net's intensity augmentation to the image (`intensity_augment`).
        per_channel: draw the intensity augmentation's factors per channel, as nnU-Net v2 does (False: one draw for
            all channels).
        ignore: whether labels may mark unannotated voxels (the description's ``ignore``), decided once; None:
            look at each label (a scan of the whole cached volume per patch).
    """

    def __init__(self, keys: KeysCollection, roi_size: Sequence[int], fg_indices_key: str = "label_fg_indices",
                 pos: float = 0.5, rotate_prob: float = 0.2, rotate_range: float = math.pi / 6,
                 scale_prob: float = 0.2, scale_range: Sequence[float] = (0.7, 1.4), flip_prob: float = 0.5,
                 intensity: bool = True, per_channel: bool = False, ignore: bool | None = None,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"RandPatchAugmentd takes the image key then the label key, got {self.keys}")
        self.roi_size = [int(s) for s in roi_size]
        self.fg_indices_key = fg_indices_key
        self.pos, self.flip_prob, self.intensity = float(pos), float(flip_prob), bool(intensity)
        self.per_channel = bool(per_channel)
        self.ignore = None if ignore is None else bool(ignore)
        self.rotate_prob, self.rotate_range = float(rotate_prob), float(rotate_range)
        self.scale_prob, self.scale_range = float(scale_prob), (float(scale_range[0]), float(scale_range[1]))

    def randomize(self, data: object = None) -> None:  # noqa: D102 - drawn inside __call__
        pass

    def _centre(self, d: Mapping, shape: Sequence[int]) -> np.ndarray:
        fg = d.get(self.fg_indices_key)
        if fg is not None and len(fg) and self.R.random_sample() < self.pos:
            flat = int(np.asarray(fg).reshape(-1)[self.R.randint(len(fg))])
            return np.array(np.unravel_index(flat, shape), dtype=np.float64)
        return np.array([self.R.uniform(0, s - 1) for s in shape])

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        image_key, label_key = self.keys
        image, label = torch.as_tensor(d[image_key]), torch.as_tensor(d[label_key])
        shape = tuple(image.shape[1:])
        centre = self._centre(d, shape)
        rotate = self.R.random_sample() < self.rotate_prob
        scale = self.R.random_sample() < self.scale_prob
        # unannotated voxels (nnU-Net's ignore): their marker is not interpolated
        ignore = has_ignore(label) if self.ignore is None else self.ignore  # (split/join change nothing without)
        both = torch.cat([image.float(), split_ignore(label) if ignore else label.float()])
        if rotate or scale:
            m = torch.eye(3)
            if rotate:
                m = _rotation([self.R.uniform(-self.rotate_range, self.rotate_range) for _ in range(3)]) @ m
            if scale:
                m = m * float(self.R.uniform(*self.scale_range))
            grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) - (n - 1) / 2
                                                for n in self.roi_size], indexing="ij"), -1).reshape(-1, 3)
            source = grid @ m.T + torch.as_tensor(centre, dtype=torch.float32)
            normalised = source / (torch.tensor(shape, dtype=torch.float32) - 1).clamp(min=1) * 2 - 1
            grid = normalised.flip(-1).reshape(1, *self.roi_size, 3).to(both.device)
            patch = F.grid_sample(both[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
        else:
            start = [int(round(c - n / 2)) for c, n in zip(centre, self.roi_size, strict=True)]
            start = [min(max(lo, 0), s - n) if s >= n else (s - n) // 2
                     for lo, s, n in zip(start, shape, self.roi_size, strict=True)]
            patch = _crop(both, start, self.roi_size)
        flips = [axis + 1 for axis in range(3) if self.R.random_sample() < self.flip_prob]
        if flips:
            patch = patch.flip(flips)
        x, y = patch[: image.shape[0]], patch[image.shape[0]:]
        if ignore:
            y = join_ignore(y)
        if self.intensity:
            x = intensity_augment(x, self.R, per_channel=self.per_channel)
        d[image_key], d[label_key] = x.contiguous(), y.contiguous()
        d.pop(self.fg_indices_key, None)
        d.pop(self.fg_indices_key.replace("fg", "bg"), None)
        return d


def intensity_augment(x: torch.Tensor, rng: np.random.RandomState, per_channel: bool = False) -> torch.Tensor:
    """nnU-Net's intensity augmentation of an image ``(C, H, W, D)`` (z-scored), each with its probability:
    Gaussian noise (0.1), blur (0.2), brightness (0.15), contrast (0.15), low resolution (0.25), gamma (0.3) and
    inverted gamma (0.1).

    ``per_channel=False`` draws one factor for all channels (the budget recipe as measured until 2026-12-06);
    ``per_channel=True`` is nnU-Net v2's own (`_per_channel`): each contrast gets its own factors, so the
    contrasts' relative intensities vary too."""
    if per_channel:
        return _per_channel(x, rng)
    x = x.clone()
    if rng.random_sample() < 0.1:
        x = x + torch.randn(x.shape, generator=None, device=x.device, dtype=x.dtype) * math.sqrt(rng.uniform(0, 0.1))
    if rng.random_sample() < 0.2:
        x = _blur(x, float(rng.uniform(0.5, 1.0)))
    if rng.random_sample() < 0.15:
        x = x * float(rng.uniform(0.75, 1.25))
    if rng.random_sample() < 0.15:
        factor = float(rng.uniform(0.75, 1.25))
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        x = torch.minimum(torch.maximum((x - mean) * factor + mean, lo), hi)
    if rng.random_sample() < 0.25:
        zoom = float(rng.uniform(0.5, 1.0))
        small = F.interpolate(x[None], scale_factor=zoom, mode="nearest")
        x = F.interpolate(small, size=x.shape[1:], mode="trilinear", align_corners=False)[0]
    for invert, prob in ((True, 0.1), (False, 0.3)):
        if rng.random_sample() < prob:
            gamma = float(rng.uniform(0.7, 1.5) if rng.random_sample() < 0.5 else rng.uniform(0.7, 1.0))
            v = -x if invert else x
            mean, std = v.mean(dim=(1, 2, 3), keepdim=True), v.std(dim=(1, 2, 3), keepdim=True)
            lo, hi = v.amin(dim=(1, 2, 3), keepdim=True), v.amax(dim=(1, 2, 3), keepdim=True)
            v = ((v - lo) / (hi - lo + 1e-7)).pow(gamma) * (hi - lo + 1e-7) + lo
            v = (v - v.mean(dim=(1, 2, 3), keepdim=True)) / (v.std(dim=(1, 2, 3), keepdim=True) + 1e-8) * std + mean
            x = -v if invert else v
    return x


def bg_contrast(rng: np.random.RandomState, lo: float, hi: float) -> float:
    """A factor from ``(lo, hi)`` as nnU-Net v2 draws one (batchgeneratorsv2's ``BGContrast``): below 1 half the
    time (from ``(lo, 1)``), above 1 otherwise (from ``(1, hi)``), whatever the range's asymmetry."""
    if lo < 1 and rng.random_sample() < 0.5:
        return float(rng.uniform(lo, 1.0))
    return float(rng.uniform(max(lo, 1.0), hi))


def _gamma(c: torch.Tensor, gamma: float, invert: bool) -> torch.Tensor:
    """Gamma on one channel ``(H, W, D)`` scaled to [0, 1], its mean and standard deviation kept."""
    v = -c if invert else c
    mean, std, lo, hi = v.mean(), v.std(), v.amin(), v.amax()
    v = ((v - lo) / (hi - lo + 1e-7)).pow(gamma) * (hi - lo + 1e-7) + lo
    v = (v - v.mean()) / (v.std() + 1e-8) * std + mean
    return -v if invert else v


def _per_channel(x: torch.Tensor, rng: np.random.RandomState) -> torch.Tensor:
    """nnU-Net v2's intensity augmentation (``nnUNetTrainer.get_training_transforms``), channel by channel: noise of
    one variance for all channels; blur (each channel with probability 0.5, a sigma per axis), brightness and
    contrast (a factor per channel, ``bg_contrast``), low resolution (each channel with probability 0.5, its own
    zoom) and gamma (a gamma per channel, ``bg_contrast`` of (0.7, 1.5)). ``x`` ``(C, H, W, D)``."""
    x = x.clone()
    channels = range(x.shape[0])
    if rng.random_sample() < 0.1:
        x = x + torch.randn(x.shape, device=x.device, dtype=x.dtype) * math.sqrt(rng.uniform(0, 0.1))
    if rng.random_sample() < 0.2:
        for c in channels:
            if rng.random_sample() < 0.5:
                x[c] = _blur(x[c : c + 1], [float(rng.uniform(0.5, 1.0)) for _ in range(3)])[0]
    if rng.random_sample() < 0.15:
        x = x * torch.tensor([bg_contrast(rng, 0.75, 1.25) for _ in channels], dtype=x.dtype,
                             device=x.device).reshape(-1, 1, 1, 1)
    if rng.random_sample() < 0.15:
        factor = torch.tensor([bg_contrast(rng, 0.75, 1.25) for _ in channels], dtype=x.dtype,
                              device=x.device).reshape(-1, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
        x = torch.minimum(torch.maximum((x - mean) * factor + mean, lo), hi)
    if rng.random_sample() < 0.25:
        for c in channels:
            if rng.random_sample() < 0.5:
                zoom = float(rng.uniform(0.5, 1.0))           # one zoom for the three axes (nnU-Net's)
                size = [max(1, round(n * zoom)) for n in x.shape[1:]]
                small = F.interpolate(x[None, c : c + 1], size=size, mode="nearest-exact")
                x[c] = F.interpolate(small, size=x.shape[1:], mode="trilinear", align_corners=False)[0, 0]
    for invert, prob in ((True, 0.1), (False, 0.3)):
        if rng.random_sample() < prob:
            for c in channels:
                x[c] = _gamma(x[c], bg_contrast(rng, 0.7, 1.5), invert)
    return x
