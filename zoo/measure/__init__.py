"""What is measured of one model: the reference MAC count (flops), the third-party counters beside
it (third_party), the simulated training step (memory), inference time (latency). Every use of
torch's private API is in zoo/torch_private.py."""
