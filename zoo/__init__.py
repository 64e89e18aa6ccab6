"""zoo: image-classification models compared by what they cost to run.

Data flow: catalogue (which models) -> build (architecture only, no weights)
-> counting (params, MACs, training FLOPs) -> data/*.csv -> site.
"""

__version__ = "0.1.0"
