"""simcne: t-SimCNE maps of image datasets (Böhm, Berens & Kobak, ICLR 2023)."""

__version__ = "0.1.0"
