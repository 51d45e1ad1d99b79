"""cord-proxy: collaborative step-wise multi-teacher decoding (CoRD) behind an OpenAI API."""

from cord_proxy.decoding import DecodeJob, DecodeOptions, DecodeResult, FinishedTrace, decode

__version__ = "0.1.0"
__all__ = [
    "DecodeJob",
    "DecodeOptions",
    "DecodeResult",
    "FinishedTrace",
    "__version__",
    "decode",
]
