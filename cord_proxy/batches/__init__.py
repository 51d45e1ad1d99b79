"""The OpenAI Files and Batches API: uploads, batches run on the proxy's decoder, outputs."""

from cord_proxy.batches.routes import install_batches

__all__ = ["install_batches"]
