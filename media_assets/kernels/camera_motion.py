"""How far the camera moved between two frames of one shot: ORB features, RANSAC similarity.

The textbook global-motion estimate (OpenCV): ORB keypoints (Rublee et al., ICCV 2011) on
both frames, Lowe's ratio test on their Hamming matches, and a 4-degree-of-freedom
similarity (translation, rotation, uniform scale: pans, tilts, zooms, roll) fitted with RANSAC
(``cv2.estimateAffinePartial2D``). Where the fit is supported by enough inliers, the second
view's frame is mapped into the first and the shared area measured
(``cv2.intersectConvexConvex``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

WIDTH = 512          # frames are compared at this width (pixels); heights keep the aspect
N_FEATURES = 1500    # ORB keypoints per frame
RATIO = 0.75         # Lowe's ratio test (Lowe, IJCV 2004)
MIN_INLIERS = 25     # RANSAC inliers a camera motion needs before it is believed
MIN_INLIER_SHARE = 0.3  # ... and the share of ratio-test matches they make up
RANSAC_PX = 4.0      # reprojection tolerance at WIDTH, pixels
MAX_SCALE = 3.0      # a zoom beyond 3x between two samples is not believed


@dataclass(frozen=True)
class CameraMotion:
    """Similarity ``matrix (2, 3) float64`` mapping points of frame b into frame a; ``scale``
    (b's size in a: < 1 when the camera zoomed in), ``inliers`` (count), ``overlap`` (area
    shared by the two views over the area of the larger one, 0..1)."""

    matrix: np.ndarray
    scale: float
    inliers: int
    overlap: float


def _grey(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    img = cv2.imread(os.fspath(image), cv2.IMREAD_GRAYSCALE) if not isinstance(image, np.ndarray) else image
    if img is None:
        raise ValueError(f"cannot read image {image!r}")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    h, w = img.shape
    return cv2.resize(img, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA)


def estimate_camera_motion(a: np.ndarray | str | os.PathLike, b: np.ndarray | str | os.PathLike) -> CameraMotion | None:
    """The camera motion from view ``a`` to view ``b`` (image files, or ``(h, w)`` / ``(h, w, 3)``
    uint8 RGB arrays of the same aspect ratio), or ``None`` when no similarity transform is
    supported by ``MIN_INLIERS`` inliers making up ``MIN_INLIER_SHARE`` of the matches (different
    scenes, too little texture, a change no camera motion explains).

    Raises:
        ValueError: an image file cannot be read.
    """
    ga, gb = _grey(a), _grey(b)
    orb = cv2.ORB_create(nfeatures=N_FEATURES)
    ka, da = orb.detectAndCompute(ga, None)
    kb, db = orb.detectAndCompute(gb, None)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(db, da, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = np.float32([kb[m.queryIdx].pt for m in good])
    dst = np.float32([ka[m.trainIdx].pt for m in good])
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
    if matrix is None:
        return None
    inliers = int(mask.sum())
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if inliers < MIN_INLIERS or inliers < MIN_INLIER_SHARE * len(good) or not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return None
    h, w = ga.shape
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    mapped = cv2.transform(corners[None], matrix)[0].astype(np.float32)
    shared, _ = cv2.intersectConvexConvex(corners, mapped)
    larger = max(float(w * h), float(w * h) * scale * scale)
    return CameraMotion(matrix=matrix, scale=scale, inliers=inliers, overlap=float(shared) / larger)


def views_overlap(a: np.ndarray | str | os.PathLike, b: np.ndarray | str | os.PathLike, min_overlap: float = 0.5) -> bool:
    """True when a camera motion relates views ``a`` and ``b`` and they share at least
    ``min_overlap`` of the larger view's area (a pan of up to half a frame, a zoom of up to
    1.41x): the same view moved, not a new one (see :func:`estimate_camera_motion`)."""
    motion = estimate_camera_motion(a, b)
    return motion is not None and motion.overlap >= min_overlap
