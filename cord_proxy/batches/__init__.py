"""The OpenAI Files and Batches API: uploads, batches run on the proxy's decoder, outputs."""
