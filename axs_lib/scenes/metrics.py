"""Quality metrics accumulated window by window with torchmetrics: optical (PSNR, SSIM, MAE, SAM) and classes.

Each metric object takes windows in any order and gives, once all are seen, the value a computation over the
whole image at once gives (up to floating-point summation order): sums, counts and confusion matrices are
accumulated in float64 / int64; SSIM is computed per pixel from a window with a halo (see
:class:`OpticalMetrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F
from torchmetrics import MeanAbsoluteError, MeanMetric, MeanSquaredError
from torchmetrics.classification import MulticlassConfusionMatrix
from torchmetrics.functional.image import spectral_angle_mapper, structural_similarity_index_measure

from ..errors import InvalidSceneError

SSIM_SIGMA = 1.5
SSIM_HALO = int(3.5 * SSIM_SIGMA + 0.5)
"""How far torchmetrics' Gaussian SSIM window (11 x 11 for sigma 1.5) reaches from its centre pixel."""


def _mean(dtype: torch.dtype = torch.float64) -> MeanMetric:
    return MeanMetric(nan_strategy="ignore").set_dtype(dtype)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class OpticalMetrics:
    """Per-band and overall PSNR, SSIM and mean absolute error, and the mean spectral angle, over valid pixels.

    Values are reflectance; ``data_range`` is the PSNR peak and SSIM's dynamic range (1.0: reflectance 0..1).
    SSIM is torchmetrics' (Gaussian window, sigma 1.5, 11 x 11): a pixel's SSIM reads the pixels up to
    :data:`SSIM_HALO` away, so each window is passed with that halo around its core, read from the scene, or
    mirrored past the scene's edge exactly as torchmetrics pads a whole image (reflection); the per-pixel SSIM
    of the core then equals the whole image's. SSIM is averaged over the pixels whose whole 11 x 11 window is
    valid in both rasters (mirrored validity past the edge); PSNR, MAE and SAM over all pixels valid in both.
    SAM leaves out pixels where either spectrum is all zeros (the angle is undefined).
    """

    def __init__(self, band_names: Sequence[str], data_range: float = 1.0):
        self.band_names = list(band_names)
        self.data_range = data_range
        bands = len(self.band_names)
        self.squared_error = MeanSquaredError(num_outputs=bands).set_dtype(torch.float64)
        self.absolute_error = MeanAbsoluteError(num_outputs=bands).set_dtype(torch.float64)
        self.ssim = [_mean() for _ in range(bands)]
        self.angle = _mean()
        self.valid_pixels = 0
        self.ssim_pixels = 0
        self.angle_pixels = 0

    def update(self, prediction: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor, core: tuple[slice, slice]) -> None:
        """Add the ``core`` of a window.

        Args:
            prediction, reference: ``[bands, H, W]`` float32 reflectance of the window with its halo; values
                where not valid are ignored (any finite fill). Sums are taken in float64.
            valid: ``[H, W]`` bool, valid in both.
            core: the rows and columns of the window counted here; at least :data:`SSIM_HALO` pixels from the
                window's border.
        """
        inside = valid[core]
        if not inside.any():
            return
        predicted = prediction[:, core[0], core[1]][:, inside].double()
        expected = reference[:, core[0], core[1]][:, inside].double()
        self.valid_pixels += int(inside.sum())
        self.squared_error.update(predicted.T, expected.T)
        self.absolute_error.update(predicted.T, expected.T)
        angles = torch.rad2deg(spectral_angle_mapper(predicted[None, :, :, None], expected[None, :, :, None], reduction="none"))
        self.angle.update(angles)
        self.angle_pixels += int(torch.isfinite(angles).sum())
        self._update_ssim(prediction, reference, valid, core)

    def _update_ssim(self, prediction: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor, core: tuple[slice, slice]) -> None:
        window = 2 * SSIM_HALO + 1
        invalid_near = F.max_pool2d((~valid)[None].to(torch.float32), window, stride=1, padding=SSIM_HALO)[0] > 0
        counted = ~invalid_near[core]
        if not counted.any():
            return
        self.ssim_pixels += int(counted.sum())
        _, similarity = structural_similarity_index_measure(
            prediction[None], reference[None], sigma=SSIM_SIGMA, data_range=self.data_range,
            return_full_image=True,
        )
        for band, mean in enumerate(self.ssim):
            mean.update(similarity[0, band][core][counted].double())

    def compute(self) -> dict:
        """``{"bands": [{"band", "psnr_db", "ssim", "mae"}...], "overall": {..., "sam_degrees"}, pixel counts}``;
        ``None`` where a value is undefined (no pixel) or infinite (PSNR of identical bands)."""
        if not self.valid_pixels:
            raise InvalidSceneError("no pixel is valid in both the prediction and the reference")
        mse = self.squared_error.compute().reshape(-1)
        mae = self.absolute_error.compute().reshape(-1)
        ssim = torch.stack([mean.compute() for mean in self.ssim]) if self.ssim_pixels else torch.full_like(mse, math.nan)
        bands = [
            {"band": name, "psnr_db": self._psnr(float(error)), "ssim": _finite_or_none(float(similarity)),
             "mae": float(absolute)}
            for name, error, similarity, absolute in zip(self.band_names, mse, ssim, mae)
        ]
        overall = {
            "psnr_db": self._psnr(float(mse.mean())), "ssim": _finite_or_none(float(ssim.mean())),
            "mae": float(mae.mean()),
            "sam_degrees": _finite_or_none(float(self.angle.compute())) if self.angle_pixels else None,
        }
        return {
            "bands": bands, "overall": overall, "valid_pixels": self.valid_pixels, "ssim_pixels": self.ssim_pixels,
            "sam_pixels": self.angle_pixels, "data_range": self.data_range,
        }

    def _psnr(self, mse: float) -> float | None:
        return _finite_or_none(10 * math.log10(self.data_range**2 / mse)) if mse > 0 else None


class ClassMetrics:
    """Confusion matrix, per-class IoU and F1, mean IoU and overall accuracy of a class map against labels."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)

    def update(self, prediction: torch.Tensor, reference: torch.Tensor) -> None:
        """Add pixels: ``prediction`` and ``reference`` are int64 classes of pixels valid in both (ignored
        labels left out); a value outside ``0..num_classes - 1`` is an error."""
        for name, values in (("prediction", prediction), ("reference", reference)):
            if values.numel() and not 0 <= int(values.min()) <= int(values.max()) < self.num_classes:
                found = int(values.max()) if int(values.max()) >= self.num_classes else int(values.min())
                raise InvalidSceneError(
                    f"the {name} holds class {found}, outside 0..{self.num_classes - 1}: pass `num_classes`, "
                    "`ignore_index` for a label to leave out, or declare the raster's nodata value (gdal_edit.py -a_nodata)"
                )
        self.confusion.update(prediction, reference)

    def compute(self) -> dict:
        """``{"confusion_matrix" (rows: reference, columns: prediction), "classes": [{"class", "iou", "f1",
        "reference_pixels", "predicted_pixels"}...], "miou", "overall_accuracy", "valid_pixels"}``; a class
        absent from both has IoU and F1 ``None`` and is left out of the mean IoU."""
        matrix = self.confusion.compute().to(torch.int64)
        total = int(matrix.sum())
        if not total:
            raise InvalidSceneError("no pixel is valid in both the prediction and the labels")
        true = matrix.diag().double()
        reference, predicted = matrix.sum(dim=1).double(), matrix.sum(dim=0).double()
        union = reference + predicted - true
        iou = true / union
        f1 = 2 * true / (reference + predicted)
        classes = [
            {"class": index, "iou": _finite_or_none(float(iou[index])), "f1": _finite_or_none(float(f1[index])),
             "reference_pixels": int(reference[index]), "predicted_pixels": int(predicted[index])}
            for index in range(self.num_classes)
        ]
        return {
            "confusion_matrix": matrix.tolist(), "classes": classes, "miou": float(iou.nanmean()),
            "overall_accuracy": float(true.sum()) / total, "valid_pixels": total,
        }
