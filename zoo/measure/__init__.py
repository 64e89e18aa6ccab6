"""What is measured of one model: the reference MAC count (flops), the third-party counters beside it
(third_party), the simulated training step (memory). Every use of torch's private API is in
torch_private."""
