"""Audio tokenizers: waveform -> 1-D int16 token sequence.

Contract (as the original ``tokenise`` validated): the input is a 1-D float numpy array
(mono samples in [-1, 1]); anything else raises ``TypeError`` (not an ndarray, not float)
or ``ValueError`` (not 1-D, empty, non-finite values).

* ``mulaw``: ITU-T G.711 mu-law companding with mu = 255 and 8-bit quantisation (256
  levels), as WaveNet (van den Oord et al. 2016, sec. 2.2) quantises audio. Tokens are in
  [0, 255]; :func:`mulaw_decode` inverts them (quantisation error only). Continuous-formula
  mu-law, F(x) = sign(x) ln(1 + mu|x|) / ln(1 + mu), not G.711's segmented table.
* ``encodec``: EnCodec 24 kHz (Defossez et al. 2022) through ``transformers``' ``EncodecModel``:
  at 6 kbps, 8 codebooks of 1024 codes at 75 frames/s (what MetaVoice-1B uses). Codes
  ``(n_codebooks, n_frames)`` are flattened frame-major: ``[f0q0, f0q1, ..., f0q7, f1q0, ...]``,
  so a prefix of the sequence is a prefix in time.
"""

from __future__ import annotations

import numpy as np


def validate_waveform(x) -> np.ndarray:
    """Return ``x`` as float32 after checking the tokenizer input contract.

    Raises:
        TypeError: ``x`` is not a numpy array, or its dtype is not floating point.
        ValueError: ``x`` is not 1-D, is empty, or holds NaN/inf.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"audio must be a numpy.ndarray, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"audio must be a float array (mono samples in [-1, 1]), got dtype {x.dtype}")
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D (mono), got shape {x.shape}; down-mix channels first")
    if x.size == 0:
        raise ValueError("audio is empty")
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    return x.astype(np.float32, copy=False)


MU = 255


def mulaw_encode(x: np.ndarray, mu: int = MU) -> np.ndarray:
    """``(n,) int16`` tokens in [0, mu] of mono samples ``x`` (clipped to [-1, 1])."""
    x = np.clip(validate_waveform(x), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.rint((y + 1) / 2 * mu).astype(np.int16)


def mulaw_decode(tokens: np.ndarray, mu: int = MU) -> np.ndarray:
    """``(n,) float32`` samples from mu-law tokens (inverse of :func:`mulaw_encode`).

    Raises:
        ValueError: a token outside [0, mu].
    """
    t = np.asarray(tokens)
    if t.size and (t.min() < 0 or t.max() > mu):
        raise ValueError(f"mu-law tokens must be in [0, {mu}]")
    y = 2 * t.astype(np.float32) / mu - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


class EncodecTokenizer:
    """EnCodec codes as int16 tokens.

    Args:
        model_dir: a local ``facebook/encodec_24khz`` snapshot (``config.json`` +
            weights); ``None`` builds the real architecture with random weights
            (``EncodecModel(EncodecConfig())``, seeded) -- for tests only: no EnCodec weights
            ship in any PyPI wheel, and nothing here downloads them.
        bandwidth_kbps: 1.5, 3, 6 (default: 8 codebooks), 12 or 24.
        n_codebooks: keep the first this many codebooks (``None`` = all the bandwidth gives).
        seed: seed of the random initialisation when ``model_dir`` is ``None``.
    """

    def __init__(self, model_dir: str | None = None, bandwidth_kbps: float = 6.0, n_codebooks: int | None = None, seed: int = 0):
        import torch
        from transformers import EncodecConfig, EncodecModel

        self.torch = torch
        if model_dir:
            self.model = EncodecModel.from_pretrained(model_dir, local_files_only=True)
        else:
            torch.manual_seed(seed)
            self.model = EncodecModel(EncodecConfig())
        self.model.eval()
        self.sample_rate = int(self.model.config.sampling_rate)
        self.bandwidth = float(bandwidth_kbps)
        self.n_codebooks = n_codebooks

    def encode(self, x: np.ndarray) -> np.ndarray:
        """``(n_frames * n_codebooks,) int16`` frame-major codes of mono ``x`` sampled at
        ``self.sample_rate`` (24,000 Hz)."""
        x = validate_waveform(x)
        with self.torch.inference_mode():
            out = self.model.encode(self.torch.from_numpy(x)[None, None, :], bandwidth=self.bandwidth)
        codes = out.audio_codes[0, 0]  # (n_q, n_frames)
        if self.n_codebooks:
            codes = codes[: self.n_codebooks]
        return codes.T.reshape(-1).numpy().astype(np.int16)
