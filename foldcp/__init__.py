"""foldcp: proteome-scale protein-complex prediction with Boltz-2 and context parallelism."""

__version__ = "0.1.0"
