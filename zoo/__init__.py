"""zoo: image-classification models compared by what they cost to run.

Data flow: catalogue (which models; each built on the meta device, no weights) -> measure
(counts, simulated memory, timing) run by stages -> store (data/*.csv) -> report (the site).
"""

__version__ = "0.1.0"
