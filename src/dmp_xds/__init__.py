"""dmp-xds: an IHE XDS.b registry and repository for DMP-style shared patient records."""

__version__ = "0.1.0"
