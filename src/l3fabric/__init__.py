"""l3fabric: pure-L3 cloud networking."""

__version__ = "0.1.0"
