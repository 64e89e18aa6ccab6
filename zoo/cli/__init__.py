"""The command line: argument parsing and one-line errors (main), one model's memory answer
(memory), one model's timings (latency)."""
